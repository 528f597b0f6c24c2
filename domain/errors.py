"""Named domain errors: each says what is wrong and carries the data a person needs to fix it."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule of the domain was broken. `code` is stable and machine-readable."""

    code = "domain_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidIdNumber(DomainError):
    code = "invalid_id_number"


class InvalidPassport(DomainError):
    code = "invalid_passport"


class UnknownArea(DomainError):
    code = "unknown_area"


class InvalidValue(DomainError):
    code = "invalid_value"


class UnknownProduct(DomainError):
    code = "unknown_product"


class CitizenNotFound(DomainError):
    code = "citizen_not_found"


class AlreadyRegistered(DomainError):
    code = "already_registered"


class CitizenDeceased(DomainError):
    code = "citizen_deceased"


class CitizenMoved(DomainError):
    code = "citizen_moved"


class IdentityMismatch(DomainError):
    code = "identity_mismatch"


class DeclarationInvalid(DomainError):
    code = "declaration_invalid"


class DeclarationNotFound(DomainError):
    code = "declaration_not_found"


class DoseRuleViolation(DomainError):
    """A dose breaks a vaccination rule; staff may record it anyway with an override reason."""

    code = "dose_rule_violation"


class DoseBeforeBirth(DoseRuleViolation):
    code = "dose_before_birth"


class DoseInFuture(DoseRuleViolation):
    code = "dose_in_future"


class TooYoungForProduct(DoseRuleViolation):
    code = "too_young_for_product"


class IntervalTooShort(DoseRuleViolation):
    code = "interval_too_short"


class MixingNotAllowed(DoseRuleViolation):
    code = "mixing_not_allowed"


class BoosterTooEarly(DoseRuleViolation):
    code = "booster_too_early"


class TooManyDoses(DoseRuleViolation):
    code = "too_many_doses"


class LotUnusable(DoseRuleViolation):
    code = "lot_unusable"


class Contraindicated(DoseRuleViolation):
    code = "contraindicated"


class Postponed(DoseRuleViolation):
    code = "postponed"


class DuplicateDose(DoseRuleViolation):
    code = "duplicate_dose"


class DoseNotFound(DomainError):
    code = "dose_not_found"


class LotNotFound(DomainError):
    code = "lot_not_found"


class Conflict(DomainError):
    """Concurrent writers kept changing the same record; retrying did not resolve it."""

    code = "conflict"


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
