"""Administrative areas: the 63 provinces of 2021, with optional district and ward."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from domain.errors import UnknownArea


@dataclass(frozen=True)
class Province:
    code: str
    name: str
    population_thousands: int


def _load_provinces() -> dict[str, Province]:
    text = resources.files("domain").joinpath("data/provinces.json").read_text("utf-8")
    return {row["code"]: Province(**row) for row in json.loads(text)["provinces"]}


PROVINCES: dict[str, Province] = _load_provinces()

_LOCAL_CODE = re.compile(r"^[0-9]{3,5}$")


@dataclass(frozen=True, order=True)
class AreaCode:
    """A province code, optionally narrowed to a district and a ward (e.g. `079.760.26734`)."""

    province: str
    district: str | None = None
    ward: str | None = None

    def __post_init__(self) -> None:
        if self.province not in PROVINCES:
            raise UnknownArea(f"unknown province code {self.province!r}", province=self.province)
        if self.ward is not None and self.district is None:
            raise UnknownArea("a ward needs its district", ward=self.ward)
        for part in (self.district, self.ward):
            if part is not None and not _LOCAL_CODE.match(part):
                raise UnknownArea(f"district and ward codes are 3-5 digits, got {part!r}")

    @classmethod
    def parse(cls, text: str) -> AreaCode:
        parts = text.strip().split(".")
        if len(parts) > 3 or not all(parts):
            raise UnknownArea(f"area code {text!r} is not PROVINCE[.DISTRICT[.WARD]]")
        return cls(*parts)

    def __str__(self) -> str:
        return ".".join(p for p in (self.province, self.district, self.ward) if p)

    @property
    def province_name(self) -> str:
        return PROVINCES[self.province].name

    def within(self, other: AreaCode) -> bool:
        """True when this area lies inside `other` (or is it)."""
        mine = (self.province, self.district, self.ward)
        theirs = (other.province, other.district, other.ward)
        return all(t is None or m == t for m, t in zip(mine, theirs, strict=True))
