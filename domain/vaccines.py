"""The vaccine catalogue (data in `data/vaccines.json`) and what it says about schedules."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources

from domain.errors import UnknownProduct


@dataclass(frozen=True)
class Product:
    code: str
    name: str
    manufacturer: str
    dcc_product: str
    dcc_manufacturer: str
    dcc_type: str
    primary_doses: int
    minimum_interval_days: int
    recommended_interval_days: tuple[int, int]
    minimum_age_years: int
    may_follow: frozenset[str]
    booster: bool

    @property
    def minimum_interval(self) -> timedelta:
        """The hard rule between primary doses of this product; advice is the recommended range."""
        return timedelta(days=self.minimum_interval_days)


@dataclass(frozen=True)
class Catalogue:
    products: dict[str, Product]
    booster_min_days_after_series: int
    max_boosters: int
    protection_delay_days: int
    recovery_protection_days: int

    def product(self, code: str) -> Product:
        try:
            return self.products[code]
        except KeyError:
            raise UnknownProduct(
                f"unknown vaccine product {code!r}", product=code, known=sorted(self.products)
            ) from None

    def may_follow(self, previous: str, following: str) -> bool:
        """Whether a primary-series dose of `following` may come after one of `previous`."""
        return previous == following or previous in self.product(following).may_follow

    def booster_products(self) -> list[str]:
        return sorted(code for code, p in self.products.items() if p.booster)


def load_catalogue() -> Catalogue:
    text = resources.files("domain").joinpath("data/vaccines.json").read_text("utf-8")
    data = json.loads(text)
    products = {
        row["code"]: Product(
            **{
                **row,
                "recommended_interval_days": tuple(row["recommended_interval_days"]),
                "may_follow": frozenset(row["may_follow"]),
            }
        )
        for row in data["products"]
    }
    return Catalogue(
        products=products,
        booster_min_days_after_series=data["booster_min_days_after_series"],
        max_boosters=data["max_boosters"],
        protection_delay_days=data["protection_delay_days"],
        recovery_protection_days=data["recovery_protection_days"],
    )


CATALOGUE = load_catalogue()
