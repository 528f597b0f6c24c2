"""The population context: the national register of citizens and its corrections."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from application.commands import Outcome, RegistryApplication, Request, Work
from domain.areas import AreaCode
from domain.citizen import Citizen
from domain.clock import local_day
from domain.errors import AlreadyRegistered, CitizenNotFound
from domain.identity import PersonId, Sex


@dataclass(frozen=True)
class CitizenDetails:
    person: PersonId
    full_name: str
    date_of_birth: date
    sex: Sex
    residence: AreaCode
    phone: str | None = None


class PopulationApp(RegistryApplication):
    context = "population"
    name = "population"

    # Commands

    def register_citizen(self, request: Request, details: CitizenDetails) -> Outcome:
        def work() -> Work:
            citizen_id = self.ids.citizen(details.person)
            if self.find(citizen_id, Citizen) is not None:
                raise AlreadyRegistered(
                    "this ID number is already in the register", person=str(details.person)
                )
            citizen = Citizen.register(
                citizen_id,
                details.person,
                details.full_name,
                details.date_of_birth,
                details.sex,
                details.residence,
                details.phone,
                today=self.today(),
                actor=request.actor,
            )
            return [citizen], {"citizen": str(details.person)}

        return self.run(request, "register_citizen", vars(details), work)

    def change_residence(self, request: Request, person: PersonId, residence: AreaCode) -> Outcome:
        return self._change(
            request,
            person,
            "change_residence",
            {"residence": residence},
            lambda c: c.change_residence(residence, request.actor),
        )

    def change_contact(self, request: Request, person: PersonId, phone: str | None) -> Outcome:
        return self._change(
            request,
            person,
            "change_contact",
            {"phone": phone},
            lambda c: c.change_contact(phone, request.actor),
        )

    def correct_record(
        self,
        request: Request,
        person: PersonId,
        reason: str,
        full_name: str | None = None,
        date_of_birth: date | None = None,
        sex: Sex | None = None,
    ) -> Outcome:
        changes = {"full_name": full_name, "date_of_birth": date_of_birth, "sex": sex}
        return self._change(
            request,
            person,
            "correct_record",
            {"reason": reason, **changes},
            lambda c: c.correct_record(
                reason, request.actor, self.today(), full_name, date_of_birth, sex
            ),
        )

    def record_death(self, request: Request, person: PersonId, died_on: date) -> Outcome:
        return self._change(
            request,
            person,
            "record_death",
            {"died_on": died_on},
            lambda c: c.record_death(died_on, request.actor, self.today()),
        )

    def move_record(
        self, request: Request, source: PersonId, target: PersonId, reason: str
    ) -> Outcome:
        """A wrong ID number is corrected (or two records merged) by moving to the right one.

        When the target is not yet registered, it is registered with the source's data.
        """

        def work() -> Work:
            old = self.citizen(source)
            new = self.find(self.ids.citizen(target), Citizen)
            old.move_to(target, reason, request.actor)
            if new is None:
                new = Citizen.register(
                    self.ids.citizen(target),
                    target,
                    old.full_name,
                    old.date_of_birth,
                    old.sex,
                    old.residence,
                    old.phone,
                    today=self.today(),
                    actor=request.actor,
                )
            new.receive(source, reason, request.actor)
            return [old, new], {"from": str(source), "to": str(target)}

        payload = {"source": source, "target": target, "reason": reason}
        return self.run(request, "move_record", payload, work)

    # Queries

    def citizen(self, person: PersonId) -> Citizen:
        citizen = self.find(self.ids.citizen(person), Citizen)
        if citizen is None:
            raise CitizenNotFound("no citizen with this ID number", person=str(person))
        return citizen

    def active(self, person: PersonId) -> Citizen:
        """The citizen a new declaration or dose may be recorded for: not moved, not deceased."""
        citizen = self.citizen(person)
        citizen.check_is_active()
        return citizen

    def current_record(self, person: PersonId) -> Citizen:
        """The citizen, following moves to the record the data now lives in."""
        citizen = self.citizen(person)
        seen = {person}
        while citizen.moved_to is not None and citizen.moved_to not in seen:
            seen.add(citizen.moved_to)
            citizen = self.citizen(citizen.moved_to)
        return citizen

    def today(self) -> date:
        return local_day(self.clock())

    def _change(
        self,
        request: Request,
        person: PersonId,
        command: str,
        payload: dict[str, Any],
        change: Callable[[Citizen], None],
    ) -> Outcome:
        def work() -> Work:
            citizen = self.citizen(person)
            change(citizen)
            return [citizen], {"citizen": str(person)}

        return self.run(request, command, {"person": person, **payload}, work)
