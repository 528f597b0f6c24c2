"""The import index: per citizen, the aggregate version and a keyed hash of each field.

A read model of the `population` events, kept so that a re-import can tell an unchanged
row from a changed one without loading every aggregate. It holds no personal data: each
hash is keyed with a secret derived from the id key and salted with the citizen's id, so
equal values of two citizens do not even hash alike. `fold` applies one Citizen event to
a row; the stores in `bulk` rebuild the whole index from the events with it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, NamedTuple
from uuid import UUID

from domain.areas import AreaCode
from domain.citizen import Citizen
from domain.identity import Sex

FIELDS: Final = ("full_name", "date_of_birth", "sex", "residence", "phone", "died_on")
NAME, BIRTH, SEX, RESIDENCE, PHONE, DEATH = range(len(FIELDS))
IDENTITY: Final = (NAME, BIRTH, SEX)

Hashes = tuple[int, int, int, int, int, int]

CITIZEN_TOPICS: Final = frozenset(
    {
        "vaxreg.population:Citizen.Registered",
        "vaxreg.population:Citizen.ResidenceChanged",
        "vaxreg.population:Citizen.ContactChanged",
        "vaxreg.population:Citizen.RecordCorrected",
        "vaxreg.population:Citizen.Died",
        "vaxreg.population:Citizen.MovedTo",
        "vaxreg.population:Citizen.MergedFrom",
    }
)

_KEY_PURPOSE = b"population-import-index"
_HASHES = struct.Struct(">6q")


class IndexRow(NamedTuple):
    citizen_id: UUID
    version: int
    hashes: Hashes
    registered_at: int | None = None
    """The notification id of the citizen's `Registered` event (None when not known)."""


@dataclass(frozen=True)
class CitizenValues:
    """The fields of a citizen that an extract row states, in their stored form."""

    full_name: str
    date_of_birth: date
    sex: Sex
    residence: AreaCode
    phone: str | None
    died_on: date | None

    @classmethod
    def of(cls, citizen: Citizen) -> CitizenValues:
        return cls(
            citizen.full_name,
            citizen.date_of_birth,
            citizen.sex,
            citizen.residence,
            citizen.phone,
            citizen.died_on,
        )

    def texts(self) -> tuple[str, str, str, str, str, str]:
        return (
            self.full_name,
            self.date_of_birth.isoformat(),
            self.sex.value,
            str(self.residence),
            self.phone or "",
            self.died_on.isoformat() if self.died_on else "",
        )


_SALTS: Final = tuple(field.to_bytes(16, "big") for field in range(len(FIELDS)))


class FieldHasher:
    """Keyed, per-citizen salted 64-bit hashes of field values (signed, to fit a bigint).

    `digests` gives all six as 8-byte big-endian digests: a bigint's binary COPY form.
    """

    def __init__(self, id_key: bytes) -> None:
        self._key = hmac.new(id_key, _KEY_PURPOSE, hashlib.sha256).digest()

    def hash(self, citizen_id: UUID, field: int, text: str) -> int:
        digest = hashlib.blake2b(
            text.encode(),
            digest_size=8,
            key=self._key,
            salt=_SALTS[field],
            person=citizen_id.bytes,
        ).digest()
        return int.from_bytes(digest, "big", signed=True)

    def digests(self, citizen_id: bytes, texts: Iterable[str]) -> list[bytes]:
        """The hashes of the six field texts (in `FIELDS` order), as 8-byte digests."""
        key = self._key
        blake2b = hashlib.blake2b
        return [
            blake2b(text.encode(), digest_size=8, key=key, salt=salt, person=citizen_id).digest()
            for salt, text in zip(_SALTS, texts, strict=True)
        ]

    def hashes(self, citizen_id: UUID, values: CitizenValues) -> Hashes:
        h = self.hash
        a, b, c, d, e, f = values.texts()
        return (
            h(citizen_id, NAME, a),
            h(citizen_id, BIRTH, b),
            h(citizen_id, SEX, c),
            h(citizen_id, RESIDENCE, d),
            h(citizen_id, PHONE, e),
            h(citizen_id, DEATH, f),
        )


def unpack_hashes(digests: bytes) -> Hashes:
    """The six signed hashes of the concatenated `FieldHasher.digests` of a row."""
    a, b, c, d, e, f = _HASHES.unpack(digests)
    return (a, b, c, d, e, f)


def changed_fields(stored: Hashes, row: Hashes, states_death: bool) -> set[int]:
    """The fields a row would change. A row without a death date never undoes one."""
    changed = {i for i in range(len(FIELDS)) if stored[i] != row[i]}
    if not states_death:
        changed.discard(DEATH)
    return changed


def fold(
    hasher: FieldHasher, row: IndexRow | None, event: Any, position: int | None = None
) -> IndexRow | None:
    """The index row after one Citizen event at `position` in the store (None before the
    citizen is registered).

    Events that change none of the indexed fields (moves, merges) only advance the version.
    """
    citizen_id: UUID = event.originator_id
    version: int = event.originator_version
    kind = type(event).__name__
    if kind == "Registered":
        values = CitizenValues(
            event.full_name,
            event.date_of_birth,
            event.sex,
            event.residence,
            event.phone,
            None,
        )
        return IndexRow(citizen_id, version, hasher.hashes(citizen_id, values), position)
    if row is None:
        return None
    hashes = list(row.hashes)
    updates: Iterable[tuple[int, str]] = ()
    if kind == "ResidenceChanged":
        updates = [(RESIDENCE, str(event.residence))]
    elif kind == "ContactChanged":
        updates = [(PHONE, event.phone or "")]
    elif kind == "RecordCorrected":
        updates = [
            (field, text)
            for field, text in (
                (NAME, event.full_name),
                (BIRTH, event.date_of_birth and event.date_of_birth.isoformat()),
                (SEX, event.sex and event.sex.value),
            )
            if text
        ]
    elif kind == "Died":
        updates = [(DEATH, event.died_on.isoformat())]
    for field, text in updates:
        hashes[field] = hasher.hash(citizen_id, field, text)
    a, b, c, d, e, f = hashes
    return IndexRow(citizen_id, version, (a, b, c, d, e, f), row.registered_at)
