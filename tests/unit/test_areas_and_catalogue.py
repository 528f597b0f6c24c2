"""The 63 provinces, area codes, and the vaccine catalogue read from the data files."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.areas import PROVINCES, AreaCode
from domain.errors import UnknownArea, UnknownProduct
from domain.vaccines import CATALOGUE

# The province codes of 2021, as listed in the reference.
REFERENCE_CODES = [
    "001",
    "002",
    "004",
    "006",
    "008",
    "010",
    "011",
    "012",
    "014",
    "015",
    "017",
    "019",
    "020",
    "022",
    "024",
    "025",
    "026",
    "027",
    "030",
    "031",
    "033",
    "034",
    "035",
    "036",
    "037",
    "038",
    "040",
    "042",
    "044",
    "045",
    "046",
    "048",
    "049",
    "051",
    "052",
    "054",
    "056",
    "058",
    "060",
    "062",
    "064",
    "066",
    "067",
    "068",
    "070",
    "072",
    "074",
    "075",
    "077",
    "079",
    "080",
    "082",
    "083",
    "084",
    "086",
    "087",
    "089",
    "091",
    "092",
    "093",
    "094",
    "095",
    "096",
]


class TestProvinces:
    def test_the_63_provinces_of_2021(self) -> None:
        assert len(REFERENCE_CODES) == 63
        assert sorted(PROVINCES) == REFERENCE_CODES

    def test_names_and_the_largest_populations(self) -> None:
        assert PROVINCES["001"].name == "Hà Nội"
        assert PROVINCES["046"].name == "Thừa Thiên Huế"
        largest = sorted(PROVINCES.values(), key=lambda p: -p.population_thousands)[:2]
        assert [p.code for p in largest] == ["079", "001"]
        assert all(p.population_thousands > 0 for p in PROVINCES.values())

    def test_the_population_is_not_uniform(self) -> None:
        sizes = [p.population_thousands for p in PROVINCES.values()]
        assert max(sizes) > 10 * min(sizes)


class TestAreaCode:
    def test_parse_a_ward(self) -> None:
        area = AreaCode.parse(" 079.760.26734 ")
        assert (area.province, area.district, area.ward) == ("079", "760", "26734")
        assert str(area) == "079.760.26734"
        assert area.province_name == "TP Hồ Chí Minh"

    def test_parse_a_province_and_a_district(self) -> None:
        assert AreaCode.parse("001") == AreaCode("001")
        assert str(AreaCode.parse("001.005")) == "001.005"

    @pytest.mark.parametrize("text", ["003", "000", "100"])
    def test_an_unknown_province_is_refused(self, text: str) -> None:
        with pytest.raises(UnknownArea) as caught:
            AreaCode.parse(text)
        assert caught.value.code == "unknown_area"
        assert caught.value.details == {"province": text}

    @pytest.mark.parametrize("text", ["079.760.26734.1", "079..26734", "", "079."])
    def test_a_malformed_code_is_refused(self, text: str) -> None:
        with pytest.raises(UnknownArea):
            AreaCode.parse(text)

    def test_a_ward_needs_its_district(self) -> None:
        with pytest.raises(UnknownArea) as caught:
            AreaCode("079", None, "26734")
        assert caught.value.details == {"ward": "26734"}

    @pytest.mark.parametrize("part", ["7a", "12", "123456", " 760"])
    def test_district_and_ward_codes_are_3_to_5_digits(self, part: str) -> None:
        with pytest.raises(UnknownArea):
            AreaCode("079", part)
        with pytest.raises(UnknownArea):
            AreaCode("079", "760", part)

    def test_within(self) -> None:
        ward = AreaCode.parse("079.760.26734")
        assert ward.within(AreaCode("079"))
        assert ward.within(AreaCode("079", "760"))
        assert ward.within(ward)
        assert not ward.within(AreaCode("079", "761"))
        assert not ward.within(AreaCode("001"))
        assert not AreaCode("079").within(AreaCode("079", "760"))


class TestCatalogue:
    def test_schedule_constants(self) -> None:
        assert CATALOGUE.booster_min_days_after_series == 90
        assert CATALOGUE.max_boosters == 2
        assert CATALOGUE.protection_delay_days == 14
        assert CATALOGUE.recovery_protection_days == 180

    @pytest.mark.parametrize(
        ("code", "doses", "interval", "age"),
        [
            ("vaxzevria", 2, 28, 18),
            ("sputnik-v", 2, 21, 18),
            ("comirnaty", 2, 21, 12),
            ("spikevax", 2, 28, 12),
            ("vero-cell", 2, 21, 18),
            ("hayat-vax", 2, 21, 18),
            ("abdala", 3, 14, 18),
            ("janssen", 1, 0, 18),
        ],
    )
    def test_products(self, code: str, doses: int, interval: int, age: int) -> None:
        product = CATALOGUE.product(code)
        assert product.primary_doses == doses
        assert product.minimum_interval == timedelta(days=interval)
        assert product.minimum_age_years == age
        low, high = product.recommended_interval_days
        assert interval <= low <= high

    def test_an_unknown_product_lists_the_known_ones(self) -> None:
        with pytest.raises(UnknownProduct) as caught:
            CATALOGUE.product("sinovac")
        assert caught.value.details["product"] == "sinovac"
        assert caught.value.details["known"] == sorted(CATALOGUE.products)

    @pytest.mark.parametrize(
        ("previous", "following", "allowed"),
        [
            ("vaxzevria", "comirnaty", True),
            ("vaxzevria", "spikevax", True),
            ("vaxzevria", "vaxzevria", True),
            ("comirnaty", "vaxzevria", False),
            ("spikevax", "vaxzevria", False),
            ("comirnaty", "spikevax", False),
            ("sputnik-v", "comirnaty", False),
            ("vero-cell", "vero-cell", True),
        ],
    )
    def test_mixing(self, previous: str, following: str, allowed: bool) -> None:
        assert CATALOGUE.may_follow(previous, following) is allowed

    def test_booster_products(self) -> None:
        assert CATALOGUE.booster_products() == ["comirnaty", "spikevax", "vaxzevria"]

    def test_mixing_rules_name_only_known_products(self) -> None:
        for product in CATALOGUE.products.values():
            assert product.may_follow <= set(CATALOGUE.products)
            assert product.code not in product.may_follow
