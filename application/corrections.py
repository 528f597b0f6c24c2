"""Corrections that span contexts."""

from __future__ import annotations

from application.commands import Outcome, Request
from application.immunization import ImmunizationApp
from application.population import PopulationApp
from domain.identity import PersonId


def move_person(
    population: PopulationApp,
    immunization: ImmunizationApp,
    request: Request,
    source: PersonId,
    target: PersonId,
    reason: str,
) -> list[Outcome]:
    """Correct a wrong ID number (or merge a duplicate) in the register and the vaccination
    history. Each step is idempotent, so a move interrupted between them is completed by
    running it again."""
    outcomes = []
    if population.citizen(source).moved_to != target:
        outcomes.append(population.move_record(request, source, target, reason))
    outcomes.append(immunization.move_record(request, source, target, reason))
    return outcomes
