"""The synthetic population register: determinism, realism, uniqueness and injected errors."""

from __future__ import annotations

import io
import json
import statistics
import unicodedata
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from api.cli.population import population_app
from infrastructure.population import generator
from infrastructure.population.generator import (
    ERROR_KINDS,
    REGISTER_DATE,
    generate_register,
    generate_rows,
    injected_errors,
)
from infrastructure.population.rows import (
    Reason,
    RegisterEntry,
    RowRejected,
    parse_row,
    read_rows,
    write_csv,
    write_ndjson,
)


@pytest.fixture(scope="module")
def population() -> list[dict[str, str]]:
    return list(generate_register(200_000, seed=2021))


def age_on_register_date(row: dict[str, str]) -> int:
    born = date.fromisoformat(row["date_of_birth"])
    before_birthday = (REGISTER_DATE.month, REGISTER_DATE.day) < (born.month, born.day)
    return REGISTER_DATE.year - born.year - before_birthday


def test_same_seed_same_rows_and_longer_runs_extend_shorter_ones() -> None:
    first = list(generate_register(3000, seed=5, error_rate=0.02))
    assert first == list(generate_register(3000, seed=5, error_rate=0.02))
    assert first[:1000] == list(generate_register(1000, seed=5, error_rate=0.02))
    assert first != list(generate_register(3000, seed=6, error_rate=0.02))


def test_rows_without_injected_errors_do_not_depend_on_the_error_rate() -> None:
    clean = list(generate_register(2000, seed=9))
    noisy = list(generate_rows(2000, seed=9, error_rate=0.3))
    assert any(kind is not None for _, kind in noisy)
    for plain, (row, kind) in zip(clean, noisy, strict=True):
        if kind is None:
            assert row == plain


def test_ids_are_unique(population: list[dict[str, str]]) -> None:
    assert len({row["id_number"] for row in population}) == len(population)


def test_every_generated_row_parses(population: list[dict[str, str]]) -> None:
    for line, row in enumerate(population[:20_000], start=1):
        entry = parse_row(row, line)
        assert entry.as_row() == row


def test_provinces_follow_population(population: list[dict[str, str]]) -> None:
    births = Counter(row["id_number"][:3] for row in population)
    homes = Counter(row["residence"][:3] for row in population)
    assert [code for code, _ in births.most_common(2)] == ["079", "001"]
    assert {code for code, _ in homes.most_common(2)} == {"079", "001"}
    assert births["079"] / len(population) == pytest.approx(8993 / 96180, rel=0.05)
    assert len(births) == 63
    stayed = sum(row["residence"][:3] == row["id_number"][:3] for row in population)
    assert 0.78 < stayed / len(population) < 0.85


def test_ages_follow_the_pyramid(population: list[dict[str, str]]) -> None:
    ages = [age_on_register_date(row) for row in population]
    assert 30 <= statistics.median(ages) <= 34
    assert min(ages) == 0
    assert max(ages) == 100
    over_80 = sum(age >= 80 for age in ages) / len(ages)
    under_10 = sum(age < 10 for age in ages) / len(ages)
    assert 0.01 < over_80 < 0.03
    assert 0.15 < under_10 < 0.19


def test_sex_phone_and_death_shares(population: list[dict[str, str]]) -> None:
    n = len(population)
    assert 0.49 < sum(row["sex"] == "female" for row in population) / n < 0.52
    adults = [row for row in population if age_on_register_date(row) >= 18]
    children = [row for row in population if age_on_register_date(row) < 18]
    assert 0.83 < sum("phone" in row for row in adults) / len(adults) < 0.87
    assert not any("phone" in row for row in children)
    deceased = [row for row in population if "deceased_on" in row]
    assert 0.002 < len(deceased) / n < 0.02
    assert all(row["date_of_birth"] <= row["deceased_on"] <= "2021-07-01" for row in deceased)


def test_names_look_vietnamese(population: list[dict[str, str]]) -> None:
    families = Counter(row["full_name"].split()[0] for row in population)
    n = len(population)
    assert families.most_common(1)[0][0] == "Nguyễn"
    assert 0.36 < families["Nguyễn"] / n < 0.40
    assert 0.10 < families["Trần"] / n < 0.12
    assert families["Huỳnh"] > 0
    assert families["Hoàng"] > 0
    women = [row["full_name"] for row in population if row["sex"] == "female"]
    men = [row["full_name"] for row in population if row["sex"] == "male"]
    assert sum(" Thị " in name for name in women) / len(women) > 0.3
    assert not any(" Thị " in name for name in men)
    assert not any(" Văn " in name for name in women)
    assert all(unicodedata.is_normalized("NFC", row["full_name"]) for row in population[:5000])
    assert all(len(row["full_name"].split()) == 3 for row in population[:5000])


def _check_errors(text: str, fmt: str, count: int, seed: int, rate: float) -> Counter[Reason]:
    """Every injected error is refused at its line with its reason; nothing else is refused,
    and each duplicate repeats the ID of an earlier accepted row."""
    expected = injected_errors(count, seed, rate, "csv" if fmt == "csv" else "ndjson")
    seen: set[str] = set()
    results = list(read_rows(io.StringIO(text)))
    assert len(results) == count
    for line, result in results:
        kind = expected.get(line)
        if kind is None or kind is Reason.DUPLICATE_ID:
            assert isinstance(result, RegisterEntry), (line, result)
            assert (result.id_number.value in seen) == (kind is Reason.DUPLICATE_ID), line
            seen.add(result.id_number.value)
        else:
            assert isinstance(result, RowRejected), (line, kind)
            assert result.reason_code is kind, (line, result)
    return Counter(expected.values())


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_every_injected_error_is_refused_at_its_line(fmt: str) -> None:
    out = io.StringIO()
    writer = write_csv if fmt == "csv" else write_ndjson
    writer(generate_register(10_000, seed=3, error_rate=0.05), out)
    kinds = _check_errors(out.getvalue(), fmt, 10_000, 3, 0.05)
    assert set(kinds) == set(ERROR_KINDS)
    assert all(60 < n < 140 for n in kinds.values())


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**64),
    rate=st.floats(min_value=0.0, max_value=0.6),
    count=st.integers(min_value=0, max_value=120),
)
def test_errors_and_uniqueness_hold_for_any_seed(seed: int, rate: float, count: int) -> None:
    out = io.StringIO()
    write_ndjson(generate_register(count, seed, rate), out)
    _check_errors(out.getvalue(), "ndjson", count, seed, rate)


def test_error_lines_match_generated_kinds() -> None:
    kinds = [kind for _, kind in generate_rows(500, seed=4, error_rate=0.2)]
    assert injected_errors(500, 4, 0.2) == {
        line: kind for line, kind in enumerate(kinds, start=1) if kind is not None
    }
    assert injected_errors(500, 4, 0.2, "csv") == {
        line + 1: kind for line, kind in injected_errors(500, 4, 0.2).items()
    }


def test_full_id_buckets_move_births_to_other_provinces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generator, "SERIALS_PER_BUCKET", 2)
    rows = list(generate_register(4000, seed=8))
    assert len({row["id_number"] for row in rows}) == len(rows)
    assert max(Counter(row["id_number"][:6] for row in rows).values()) == 2
    for line, row in enumerate(rows, start=1):
        parse_row(row, line)


def test_exhausted_id_space_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generator, "SERIALS_PER_BUCKET", 1)
    with pytest.raises(ValueError, match="taken"):
        list(generate_register(20_000, seed=8))


@pytest.mark.parametrize(("count", "rate"), [(-1, 0.0), (10, 1.5), (10, -0.1)])
def test_bad_arguments_are_refused(count: int, rate: float) -> None:
    with pytest.raises(ValueError, match="count"):
        next(generate_register(count, 1, rate))


def test_cli_writes_ndjson_to_stdout_deterministically() -> None:
    runner = CliRunner()
    first = runner.invoke(population_app, ["generate", "--count", "50", "--seed", "3"])
    again = runner.invoke(population_app, ["generate", "-n", "50", "--seed", "3"])
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert len(lines) == 50
    assert all(isinstance(parse_row(json.loads(line), 1), RegisterEntry) for line in lines)
    assert again.stdout == first.stdout
    assert "wrote 50 rows" in first.stderr


def test_cli_writes_csv_and_an_error_log(tmp_path: Path) -> None:
    extract = tmp_path / "register.csv"
    log = tmp_path / "errors.json"
    args = ["generate", "--count", "400", "--seed", "12", "--format", "csv", "--errors", "0.1"]
    result = CliRunner().invoke(
        population_app, [*args, "--output", str(extract), "--error-log", str(log)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    text = extract.read_text("utf-8")
    assert text.startswith("id_number,full_name,date_of_birth,sex,residence,phone,deceased_on\n")
    logged = {int(line): Reason(kind) for line, kind in json.loads(log.read_text()).items()}
    assert logged == injected_errors(400, 12, 0.1, "csv")
    _check_errors(text, "csv", 400, 12, 0.1)


def test_cli_refuses_an_error_rate_above_one() -> None:
    result = CliRunner().invoke(population_app, ["generate", "-n", "5", "--errors", "2"])
    assert result.exit_code != 0
