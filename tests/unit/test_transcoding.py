"""vaxreg's transcodings: value objects in stored events, and reading old ones."""

from __future__ import annotations

import json
from datetime import date

import pytest
from eventsourcing.persistence import JSONTranscoder

from application.transcoding import register_transcodings
from domain.areas import AreaCode
from domain.base import Actor
from domain.errors import UnknownArea
from domain.identity import Sex
from domain.mobility import Symptom


@pytest.fixture
def transcoder() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    register_transcodings(transcoder)
    return transcoder


def stored(value: object) -> bytes:
    return json.dumps(value).encode()


def test_values_come_back_equal_and_of_their_types(transcoder: JSONTranscoder) -> None:
    value = {
        "actor": Actor("nurse-7", "medical_staff", unit="79-HCM-001"),
        "area": AreaCode("079", "760"),
        "born": date(1990, 5, 17),
        "sex": Sex.FEMALE,
        "symptoms": [Symptom.FEVER],
    }
    decoded = transcoder.decode(transcoder.encode(value))

    assert decoded == value
    assert type(decoded["area"]) is AreaCode
    assert decoded["sex"] is Sex.FEMALE


def test_a_value_stored_before_a_field_was_added_takes_its_default(
    transcoder: JSONTranscoder,
) -> None:
    old = stored({"_type_": "actor", "_data_": {"user_id": "nurse-7", "role": "medical_staff"}})

    assert transcoder.decode(old) == Actor("nurse-7", "medical_staff")


def test_a_value_checked_more_strictly_since_it_was_stored_stays_readable(
    transcoder: JSONTranscoder,
) -> None:
    with pytest.raises(UnknownArea):
        AreaCode("999")
    old = stored(
        {"_type_": "area_code", "_data_": {"province": "999", "district": None, "ward": None}}
    )

    assert transcoder.decode(old).province == "999"


def test_an_unknown_enum_value_is_refused(transcoder: JSONTranscoder) -> None:
    with pytest.raises(ValueError, match="not a valid"):
        transcoder.decode(stored({"_type_": "sex", "_data_": "unknown"}))
    with pytest.raises(ValueError, match="not a valid"):
        transcoder.decode(stored({"_type_": "sex", "_data_": ["female"]}))
