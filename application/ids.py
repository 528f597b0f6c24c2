"""Aggregate ids derived from natural keys with a keyed hash.

A plain uuid5 of a 12-digit ID number could be reversed by trying all 10^12 numbers;
an HMAC with a secret that never leaves the deployment cannot.
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from uuid import UUID

from domain.areas import AreaCode
from domain.identity import PersonId, person_key

CACHED_IDS = 1 << 16


class IdDeriver:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the id key must be at least 16 bytes")
        self._key = key
        self._derive = lru_cache(maxsize=CACHED_IDS)(self._derive_uncached)

    def _derive_uncached(self, kind: str, natural_key: str) -> UUID:
        """Checkpoint lookups derive a traveller's key on every request: the cache keeps
        the HMAC off that path for travellers seen recently."""
        digest = hmac.digest(self._key, f"{kind}\x00{natural_key}".encode(), "sha256")
        return UUID(bytes=digest[:16], version=4)

    def citizen(self, person: PersonId) -> UUID:
        return self._derive("citizen", person_key(person))

    def mobility_record(self, person: PersonId) -> UUID:
        return self._derive("mobility", person_key(person))

    def vaccination_record(self, person: PersonId) -> UUID:
        return self._derive("vaccination", person_key(person))

    def area_risk(self, area: AreaCode) -> UUID:
        return self._derive("area-risk", str(area))

    def lot(self, product: str, lot_number: str) -> UUID:
        return self._derive("lot", f"{product}/{lot_number.strip().upper()}")

    def receipt(self, issuer: str, request_id: str) -> UUID:
        return self._derive("receipt", f"{issuer}\x00{request_id}")

    def pseudonym(self, person: PersonId) -> str:
        """A stable, non-reversible key for read models and the integrator feed."""
        return self.citizen(person).hex
