"""The lot register: which lots of which product exist, when they expire, and recalls."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from eventsourcing.domain import event

from domain.base import Actor, RegistryAggregate
from domain.errors import InvalidValue
from domain.vaccines import CATALOGUE

MAX_LOT_LENGTH = 32


class Lot(RegistryAggregate):
    TOPIC = "vaxreg.immunization:Lot"

    class Created(RegistryAggregate.Created):
        TOPIC = "vaxreg.immunization:Lot.Created"

    @classmethod
    def register(
        cls,
        id: UUID,
        lot_number: str,
        product: str,
        expires_on: date,
        actor: Actor,
    ) -> Lot:
        CATALOGUE.product(product)
        lot_number = lot_number.strip().upper()
        if not 0 < len(lot_number) <= MAX_LOT_LENGTH:
            raise InvalidValue(f"a lot number has 1-{MAX_LOT_LENGTH} characters")
        return cls(id, lot_number, product, expires_on, actor)

    @event("Registered", topic="vaxreg.immunization:Lot.Registered")
    def __init__(
        self,
        id: UUID,
        lot_number: str,
        product: str,
        expires_on: date,
        actor: Actor,
    ) -> None:
        self.lot_number = lot_number
        self.product = product
        self.expires_on = expires_on
        self.recalled_at: datetime | None = None

    def recall(self, reason: str, at: datetime, actor: Actor) -> None:
        if self.recalled_at is None:
            self._recalled(reason, at, actor)

    def usable_problem(self, product: str, given_at: datetime, given_on: date) -> str | None:
        """Why a dose of `product` given then may not come from this lot, or None."""
        if product != self.product:
            return f"lot {self.lot_number} is of {self.product}, not {product}"
        if given_on > self.expires_on:
            return f"lot {self.lot_number} expired on {self.expires_on}"
        if self.recalled_at is not None and self.recalled_at <= given_at:
            return f"lot {self.lot_number} was recalled on {self.recalled_at:%Y-%m-%d}"
        return None

    @event("Recalled", topic="vaxreg.immunization:Lot.Recalled")
    def _recalled(self, reason: str, at: datetime, actor: Actor) -> None:
        self.recalled_at = at
