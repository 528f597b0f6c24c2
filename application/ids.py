"""Aggregate ids derived from natural keys with a keyed hash.

A plain uuid5 of a 12-digit ID number could be reversed by trying all 10^12 numbers;
an HMAC with a secret that never leaves the deployment cannot.
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from uuid import UUID

from domain.areas import AreaCode
from domain.identity import PersonId, national_key, person_key

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
        return UUID(bytes=self._derived_bytes(kind, natural_key))

    def _derived_bytes(self, kind: str, natural_key: str) -> bytes:
        """The keyed hash's first 16 bytes with a version-4 UUID's version and variant."""
        head = bytearray(hmac.digest(self._key, f"{kind}\x00{natural_key}".encode(), "sha256"))
        head[6] = head[6] & 0x0F | 0x40
        head[8] = head[8] & 0x3F | 0x80
        return bytes(head[:16])

    def citizen_bytes(self, id_number: str) -> bytes:
        """``citizen(NationalId(id_number)).bytes`` without building either object, for a
        valid ID number: the bulk import derives millions."""
        return self._derived_bytes("citizen", national_key(id_number))

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
