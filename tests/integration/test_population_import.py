"""`vaxreg population import`: replay equals the extract, re-imports change nothing, changed
rows become the matching events, a killed import resumes, and the admin endpoint."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.http.problems import install_problem_handlers
from api.http.roles import Role
from api.http.routers.imports import router
from api.http.security import MemoryRevocationList, TokenIssuer, TokenVerifier
from application.commands import Request
from domain.areas import AreaCode
from domain.base import Actor
from domain.citizen import Citizen
from domain.identity import NationalId
from infrastructure.bootstrap import Registry
from infrastructure.population.bulk import PostgresBulkStore, SQLiteBulkStore
from infrastructure.population.encoding import Rejected
from infrastructure.population.generator import generate_register, injected_errors
from infrastructure.population.importer import ImportSummary, PopulationImport, rebuild_index
from infrastructure.population.index import CITIZEN_TOPICS, FieldHasher, IndexRow
from infrastructure.population.rows import (
    Reason,
    RegisterEntry,
    RegisterFormat,
    read_rows,
    write_csv,
    write_ndjson,
)
from infrastructure.settings import Settings
from tests.support.registry import (
    TEST_ID_KEY,
    TEST_SECRET,
    MovableClock,
    build_registry,
    registry_settings,
)

BACKENDS = ["sqlite", "postgres"]
TODAY = date(2021, 8, 2)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    registry = build_registry(registry_settings(tmp_path, url), MovableClock())
    yield registry
    registry.close()


def extract(count: int, seed: int, errors: float = 0.0, fmt: RegisterFormat = "ndjson") -> bytes:
    out = io.StringIO()
    rows = generate_register(count, seed, errors)
    if fmt == "csv":
        write_csv(rows, out)
    else:
        write_ndjson(rows, out)
    return out.getvalue().encode()


def run_import(
    registry: Registry, data: bytes, **options: Any
) -> tuple[ImportSummary, list[Rejected]]:
    rejected: list[Rejected] = []
    importer = PopulationImport(
        registry.population, registry.settings.id_key, on_reject=rejected.append, **options
    )
    return importer.run(io.BytesIO(data)), rejected


def entries(data: bytes) -> dict[str, RegisterEntry]:
    """The first valid row of each ID number: what the store must say after an import."""
    first: dict[str, RegisterEntry] = {}
    for _, row in read_rows(io.BytesIO(data), today=TODAY):
        if isinstance(row, RegisterEntry):
            first.setdefault(row.id_number.value, row)
    return first


def stated(citizen: Citizen) -> dict[str, Any]:
    return {
        "full_name": citizen.full_name,
        "date_of_birth": citizen.date_of_birth,
        "sex": citizen.sex,
        "residence": citizen.residence,
        "phone": citizen.phone,
        "died_on": citizen.died_on,
    }


def expected(entry: RegisterEntry) -> dict[str, Any]:
    return {
        "full_name": entry.full_name,
        "date_of_birth": entry.date_of_birth,
        "sex": entry.sex,
        "residence": entry.residence,
        "phone": entry.phone,
        "died_on": entry.deceased_on,
    }


def citizen_states(registry: Registry) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every citizen in the store, by ID number: version and state."""
    app = registry.population
    ids: set[UUID] = set()
    position = 0
    while page := app.recorder.select_notifications(position + 1, 1000):
        ids.update(n.originator_id for n in page if n.topic in CITIZEN_TOPICS)  # type: ignore[misc]
        position = page[-1].id
    states = {}
    for citizen_id in ids:
        citizen = app.find(citizen_id, Citizen)
        assert citizen is not None
        states[str(citizen.person)] = (citizen.version, stated(citizen))
    return states


def topics_after(registry: Registry, position: int) -> list[tuple[UUID, str]]:
    page = registry.population.recorder.select_notifications(position + 1, 10_000)
    return [(n.originator_id, n.topic.rsplit(".", 1)[-1]) for n in page]  # type: ignore[misc]


def index_rows(registry: Registry) -> dict[UUID, IndexRow]:
    store = _bulk_store(registry, FieldHasher(registry.settings.id_key))
    with store.open(), store.batch() as batch:
        return batch.lookup([UUID(hex=i) for i in _all_citizen_ids(registry)])


def _bulk_store(registry: Registry, hasher: FieldHasher) -> PostgresBulkStore | SQLiteBulkStore:
    app = registry.population
    if registry.settings.uses_postgres:
        return PostgresBulkStore(app.recorder, app.mapper, hasher)  # type: ignore[arg-type]
    return SQLiteBulkStore(app.recorder, app.mapper, hasher)  # type: ignore[arg-type]


def _all_citizen_ids(registry: Registry) -> set[str]:
    page = registry.population.recorder.select_notifications(1, 1_000_000)
    return {n.originator_id.hex for n in page if n.topic in CITIZEN_TOPICS}  # type: ignore[union-attr]


# Import then replay


@given(
    seed=st.integers(min_value=0, max_value=10_000),
    errors=st.sampled_from([0.0, 0.05, 0.3]),
    fmt=st.sampled_from(["ndjson", "csv"]),
)
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_import_then_replay_equals_the_extract(
    store: Registry, seed: int, errors: float, fmt: RegisterFormat
) -> None:
    data = extract(40, seed, errors, fmt)

    summary, rejected = run_import(store, data, batch_size=16, chunk_lines=7)

    assert {r.line: r.reason for r in rejected} == {
        line: kind.value for line, kind in injected_errors(40, seed, errors, fmt).items()
    }
    assert summary.rows == 40
    assert summary.created + summary.updated + summary.unchanged + summary.rejected == 40
    for id_number, entry in entries(data).items():
        citizen = store.population.citizen(NationalId(id_number))
        assert stated(citizen) == expected(entry), f"row of {id_number}"


def test_every_injected_error_kind_is_rejected_with_its_line(store: Registry) -> None:
    formats: tuple[RegisterFormat, ...] = ("ndjson", "csv")
    for fmt in formats:
        data = extract(400, 7, 0.15, fmt)
        _, rejected = run_import(store, data, batch_size=64)
        injected = injected_errors(400, 7, 0.15, fmt)
        assert {r.line: r.reason for r in rejected} == {k: v.value for k, v in injected.items()}
        assert {Reason(r.reason) for r in rejected} == {
            Reason.BAD_ID_NUMBER,
            Reason.ID_CONTRADICTS_BIRTH,
            Reason.MISSING_NAME,
            Reason.UNKNOWN_PROVINCE,
            Reason.DUPLICATE_ID,
        }


def test_a_duplicate_in_a_later_batch_is_rejected_too(store: Registry) -> None:
    row = json.loads(extract(1, 3).decode())
    other = extract(30, 4)
    data = json.dumps(row).encode() + b"\n" + other + json.dumps(row).encode() + b"\n"

    summary, rejected = run_import(store, data, batch_size=5, chunk_lines=5)

    assert rejected == [
        Rejected(32, "duplicate_id", "this ID number is on an earlier line of the file")
    ]
    assert summary.created == 31


def test_bad_lines_are_rejected_and_the_file_goes_on(store: Registry) -> None:
    good = extract(3, 5).splitlines()
    data = b"\n".join(
        [good[0], b"{not json", b"x" * 5000, b"\xff\xfe", b"", good[1], b"[1]", good[2]]
    )

    summary, rejected = run_import(store, data)

    assert [(r.line, r.reason) for r in rejected] == [
        (2, "bad_json"),
        (3, "line_too_long"),
        (4, "bad_encoding"),
        (7, "bad_json"),
    ]
    assert summary.created == 3


# Re-import and changes


def test_reimporting_the_same_extract_changes_nothing(store: Registry) -> None:
    data = extract(300, 11, 0.05)
    first, _ = run_import(store, data, batch_size=100)
    head = store.population.head()

    again, rejected = run_import(store, data, batch_size=100)

    assert store.population.head() == head
    assert (again.created, again.updated, again.events) == (0, 0, 0)
    assert again.unchanged == first.created
    assert again.rejected == first.rejected == len(rejected)


def test_a_changed_record_becomes_exactly_one_event_of_its_kind(store: Registry) -> None:
    rows = [json.loads(line) for line in extract(50, 12).splitlines()]
    alive = [i for i, r in enumerate(rows) if "deceased_on" not in r and "phone" in r]
    renamed, moved, phoned, died = alive[:4]
    run_import(store, _ndjson(rows))
    head = store.population.head()
    rows[renamed]["full_name"] = "Phạm Thị Hồng Nhung"
    rows[moved]["residence"] = "001.001.00003"
    rows[phoned]["phone"] = "0987654321"
    rows[died]["deceased_on"] = "2021-06-30"

    summary, rejected = run_import(store, _ndjson(rows))

    assert (summary.created, summary.updated, summary.unchanged) == (0, 4, 46)
    assert rejected == []
    ids = store.population.ids
    assert sorted(topics_after(store, head), key=lambda t: t[1]) == sorted(
        [
            (ids.citizen(NationalId(rows[renamed]["id_number"])), "RecordCorrected"),
            (ids.citizen(NationalId(rows[moved]["id_number"])), "ResidenceChanged"),
            (ids.citizen(NationalId(rows[phoned]["id_number"])), "ContactChanged"),
            (ids.citizen(NationalId(rows[died]["id_number"])), "Died"),
        ],
        key=lambda t: t[1],
    )
    for i in (renamed, moved, phoned, died):
        citizen = store.population.citizen(NationalId(rows[i]["id_number"]))
        assert citizen.version == 2
    assert store.population.citizen(NationalId(rows[moved]["id_number"])).residence == (
        AreaCode.parse("001.001.00003")
    )

    head = store.population.head()
    partial, _ = run_import(store, _ndjson(rows[:10]))
    assert store.population.head() == head
    assert partial.unchanged == 10


def test_a_change_the_record_refuses_is_rejected(store: Registry) -> None:
    rows = [json.loads(line) for line in extract(20, 13).splitlines()]
    index = next(i for i, r in enumerate(rows) if "deceased_on" not in r)
    rows[index]["deceased_on"] = "2021-06-01"
    run_import(store, _ndjson(rows))
    rows[index]["residence"] = "001.001.00003"

    summary, rejected = run_import(store, _ndjson(rows))

    assert [(r.line, r.reason) for r in rejected] == [(index + 1, "conflicts_with_record")]
    assert summary.updated == 0


def test_the_index_follows_other_writers_and_rebuilds_from_the_events(store: Registry) -> None:
    rows = [json.loads(line) for line in extract(30, 14).splitlines()]
    run_import(store, _ndjson(rows), batch_size=10)
    person = NationalId(rows[3]["id_number"])
    admin = Request(Actor("admin-1", "admin"))
    store.population.change_residence(admin, person, AreaCode.parse("001.001.00003"))
    head = store.population.head()

    summary, _ = run_import(store, _ndjson(rows), batch_size=10)

    assert summary.updated == 1
    assert topics_after(store, head) == [(store.population.ids.citizen(person), "ResidenceChanged")]
    assert str(store.population.citizen(person).residence) == rows[3]["residence"]
    kept = index_rows(store)
    assert rebuild_index(store.population, store.settings.id_key) == store.population.head()
    assert index_rows(store) == kept
    assert len(kept) == 30


def test_the_index_gives_each_citizen_the_position_of_its_registration(store: Registry) -> None:
    rows = [json.loads(line) for line in extract(60, 5).splitlines()]
    for row in rows[::3]:
        row["deceased_on"] = row["date_of_birth"]
    run_import(store, _ndjson(rows[:40]), batch_size=10)
    run_import(store, _ndjson(rows), batch_size=25)

    kept = index_rows(store)
    assert rebuild_index(store.population, store.settings.id_key) == store.population.head()
    assert index_rows(store) == kept
    assert len(kept) == 60
    assert sum(r.version for r in kept.values()) == 80


def _ndjson(rows: list[dict[str, str]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


# Resuming after a kill


def _cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "VAXREG_DATA_DIR": str(settings.data_dir),
        "VAXREG_SECRET_KEY": TEST_SECRET,
        "VAXREG_ID_KEY": TEST_ID_KEY,
        "PYTHONPATH": str(Path.cwd()),
    }
    if settings.uses_postgres:
        env["VAXREG_DATABASE_URL"] = settings.database_url
    return env


def test_a_killed_import_resumes_to_the_store_of_one_clean_run(
    store: Registry, tmp_path: Path
) -> None:
    data = extract(3000, 21, 0.02)
    lines = data.splitlines(keepends=True)
    command = [
        sys.executable,
        "-c",
        "from api.cli.main import main; main()",
        "population",
        "import",
        "-",
        "--batch-size",
        "100",
        "--workers",
        "0",
        "--no-progress",
        "--rejects",
        str(tmp_path / "rejects.ndjson"),
    ]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, env=_cli_env(store.settings, tmp_path)
    )
    assert process.stdin is not None
    process.stdin.write(b"".join(lines[:2000]))
    process.stdin.flush()
    deadline = time.monotonic() + 60
    while store.population.head() < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = store.population.head()
    assert process.returncode == -signal.SIGKILL
    assert 1000 <= killed_at < 2900

    resumed, _ = run_import(store, data, batch_size=500)

    clean = build_registry(registry_settings(tmp_path / "clean"), MovableClock())
    try:
        once, _ = run_import(clean, data, batch_size=500)
        assert citizen_states(store) == citizen_states(clean)
    finally:
        clean.close()
    assert resumed.created + resumed.unchanged == once.created
    assert resumed.unchanged >= 900


def test_the_command_imports_a_file_and_writes_its_rejects(tmp_path: Path) -> None:
    settings = registry_settings(tmp_path)
    build_registry(settings, MovableClock()).close()
    source = tmp_path / "extract.csv"
    source.write_bytes(extract(200, 31, 0.1, "csv"))
    command = [sys.executable, "-c", "from api.cli.main import main; main()"]
    done = subprocess.run(
        [*command, "population", "import", str(source), "--workers", "1", "--batch-size", "20"],
        env=_cli_env(settings, tmp_path),
        capture_output=True,
        check=True,
    )

    summary = json.loads(done.stdout)
    rejects = [json.loads(line) for line in Path(summary["rejects_file"]).read_text().splitlines()]
    assert {r["line"]: r["reason"] for r in rejects} == {
        k: v.value for k, v in injected_errors(200, 31, 0.1, "csv").items()
    }
    assert summary["created"] + summary["rejected"] == 200
    assert b"rows/s" in done.stderr


# The admin endpoint


@pytest.fixture
def api(store: Registry) -> tuple[httpx.AsyncClient, TokenIssuer]:
    app = FastAPI()
    app.include_router(router)
    install_problem_handlers(app)
    app.state.registry = store
    app.state.token_verifier = TokenVerifier(
        store.settings.secret_keys, revocations=MemoryRevocationList()
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return client, TokenIssuer(store.settings.secret_keys)


async def _chunks(data: bytes, size: int) -> Any:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.anyio
async def test_the_admin_endpoint_streams_an_import(
    api: tuple[httpx.AsyncClient, TokenIssuer], store: Registry
) -> None:
    client, issuer = api
    data = extract(120, 41, 0.1)
    admin = {"Authorization": f"Bearer {issuer.mint(Role.ADMIN, 'admin-1')}"}
    ndjson = {"Content-Type": "application/x-ndjson"}

    response = await client.post(
        "/v1/admin/population/imports", content=_chunks(data, 777), headers=admin | ndjson
    )

    assert response.status_code == 200, response.text
    report = response.json()
    injected = injected_errors(120, 41, 0.1)
    assert report["rejected"] == len(injected)
    assert {r["line"]: r["reason"] for r in report["rejected_rows"]} == {
        k: v.value for k, v in injected.items()
    }
    assert report["created"] == 120 - len(injected)
    assert report["rejected_rows_truncated"] is False
    some = next(iter(entries(data)))
    history = store.population.events.get(store.population.ids.citizen(NationalId(some)))
    assert next(iter(history)).actor == Actor("admin-1", "admin")  # type: ignore[attr-defined]

    nurse = issuer.mint(Role.MEDICAL_STAFF, "nurse-1", unit="79-HCM-001")
    refused = await client.post(
        "/v1/admin/population/imports",
        content=data,
        headers={"Authorization": f"Bearer {nurse}"} | ndjson,
    )
    assert refused.status_code == 403
    wrong_type = await client.post(
        "/v1/admin/population/imports",
        content=data,
        headers=admin | {"Content-Type": "application/json"},
    )
    assert wrong_type.status_code == 415
    anonymous = await client.post("/v1/admin/population/imports", content=data, headers=ndjson)
    assert anonymous.status_code == 401
