"""Bodies of the command endpoints and of what they answer.

Values are checked by the domain (ID numbers, area codes, names, dates), so a wrong
value is a 422 with the domain's own code rather than a generic validation error.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from domain.doses import DoseKind, InjectionSite, ScreeningOutcome, Severity
from domain.identity import Sex
from domain.mobility import Symptom, TestKind, TestOutcome, Transport, Verdict
from domain.risk import RiskLevel
from domain.vaccination import MAX_PRIORITY_GROUP

IdNumber = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        description="A 12-digit citizen ID number (CCCD), or NATIONALITY:PASSPORT",
        examples=["079190123456"],
    ),
]
Area = Annotated[
    str,
    Field(
        min_length=1,
        max_length=20,
        description="An area code: PROVINCE[.DISTRICT[.WARD]]",
        examples=["079.760.26734"],
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=200, examples=["Nguyễn Thị Lan"])]
Reason = Annotated[str, Field(min_length=1, max_length=2000, examples=["typo at registration"])]
Text = Annotated[str, Field(max_length=2000)]
Product = Annotated[
    str, Field(min_length=1, max_length=40, description="A product code", examples=["comirnaty"])
]
LotNumber = Annotated[str, Field(min_length=1, max_length=64, examples=["PF1"])]

LAN_ID = "079190123456"
DOSE_ID = "7b0e3c55-7f5e-4a8a-9d8c-5a8c2c1b9e01"
DECLARATION_ID = "4ec7c7a8-5ecb-4c11-8e6d-1a4c75eebaad"


def _example(**example: Any) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": [example]})


# Population


class CitizenIn(BaseModel):
    model_config = _example(
        id_number=LAN_ID,
        full_name="Nguyễn Thị Lan",
        date_of_birth="1990-05-01",
        sex="female",
        residence="079.760.26734",
        phone="0912345678",
    )

    id_number: IdNumber
    full_name: Name
    date_of_birth: date
    sex: Sex
    residence: Area
    phone: Annotated[str | None, Field(max_length=20)] = None


class CorrectionIn(BaseModel):
    """Only the fields given are corrected; the ID number's digits must still agree."""

    model_config = _example(reason="typo at registration", full_name="Nguyễn Thị Lan Anh")

    reason: Reason
    full_name: Name | None = None
    date_of_birth: date | None = None
    sex: Sex | None = None


class ResidenceIn(BaseModel):
    model_config = _example(residence="001.001.00001")

    residence: Area


class ContactIn(BaseModel):
    model_config = _example(phone="0987654321")

    phone: Annotated[str | None, Field(max_length=20)] = None


class DeathIn(BaseModel):
    model_config = _example(died_on="2021-08-01")

    died_on: date


class MoveIn(BaseModel):
    """The record belongs under another ID number (a wrong number, or a duplicate)."""

    model_config = _example(target="079190123457", reason="wrong ID number at registration")

    target: IdNumber
    reason: Reason


class CitizenChanged(BaseModel):
    citizen: str = Field(examples=[LAN_ID])


class RecordMoved(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", examples=[LAN_ID])
    to: str = Field(examples=["079190123457"])


# Mobility


class RiskLevelIn(BaseModel):
    model_config = _example(
        area="079",
        level=3,
        effective_from="2021-08-04T00:00:00+07:00",
        reason="new cases per 100,000 over the threshold",
    )

    area: Area
    level: RiskLevel = Field(description="1 green, 2 yellow, 3 orange, 4 red")
    effective_from: AwareDatetime
    reason: Reason


class RiskAssessed(BaseModel):
    area: str = Field(examples=["079"])
    level: int = Field(examples=[3])


class TripIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    origin: Area
    destination: Area
    travel_date: date
    transport: Transport
    vehicle_plate: Annotated[str | None, Field(max_length=32)] = None
    checkpoint: Annotated[
        str | None,
        Field(
            max_length=64,
            description="The checkpoint passed; an officer's declaration is at their own",
        ),
    ] = None


class TestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: TestKind
    outcome: TestOutcome
    sampled_at: AwareDatetime


class DeclarationIn(BaseModel):
    """A health declaration before a trip: a citizen's own, or a traveller's at a checkpoint."""

    model_config = _example(
        id_number=LAN_ID,
        trip={
            "origin": "079",
            "destination": "001",
            "travel_date": "2021-08-02",
            "transport": "car",
            "vehicle_plate": "51A-12345",
            "checkpoint": "HN-CP-07",
        },
        symptoms=[],
        contact_with_confirmed_case=False,
        stayed_in_high_risk_area=False,
        test={"kind": "pcr", "outcome": "negative", "sampled_at": "2021-08-01T08:00:00+07:00"},
    )

    id_number: IdNumber
    trip: TripIn
    symptoms: Annotated[list[Symptom], Field(max_length=10)] = []
    contact_with_confirmed_case: bool = False
    stayed_in_high_risk_area: bool = False
    test: TestIn | None = None


class DeclarationMade(BaseModel):
    declaration_id: UUID = Field(examples=[DECLARATION_ID])
    qr_token: str = Field(description="Shown as a QR code; carries no personal data")
    valid_until: AwareDatetime


class CheckIn(BaseModel):
    """An officer's decision about a traveller at their checkpoint (from the token)."""

    model_config = _example(
        id_number=LAN_ID,
        verdict="pass",
        reasons=["valid declaration"],
        declaration_id=DECLARATION_ID,
    )

    id_number: IdNumber
    verdict: Verdict
    reasons: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=20)] = []
    declaration_id: UUID | None = None


class CheckRecorded(BaseModel):
    checkpoint: str = Field(examples=["HN-CP-07"])
    verdict: Verdict


# Immunization


class VaccinationRegistrationIn(BaseModel):
    """The identity captured at the site is checked against the population register."""

    model_config = _example(
        id_number=LAN_ID, full_name="Nguyễn Thị Lan", date_of_birth="1990-05-01", priority_group=3
    )

    id_number: IdNumber
    full_name: Name
    date_of_birth: date
    priority_group: Annotated[int | None, Field(ge=1, le=MAX_PRIORITY_GROUP)] = None


class RegisteredForVaccination(BaseModel):
    unit: str = Field(examples=["79-HCM-001"])


class ScreeningIn(BaseModel):
    model_config = _example(id_number=LAN_ID, outcome="eligible", notes="")

    id_number: IdNumber
    outcome: ScreeningOutcome
    postponed_until: date | None = None
    notes: Text = ""


class ScreeningRecorded(BaseModel):
    outcome: ScreeningOutcome


class DoseFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: Product
    lot: LotNumber
    given_at: AwareDatetime
    site: InjectionSite
    kind: DoseKind = DoseKind.PRIMARY
    vaccinator: Annotated[
        str | None,
        Field(min_length=1, max_length=100, description="Defaults to the caller's user id"),
    ] = None
    override_reason: Annotated[
        str | None,
        Field(
            max_length=2000,
            description="Records a dose that breaks a rule; the dose is flagged with the rules",
        ),
    ] = None


class DoseIn(DoseFields):
    """A dose given at the caller's own unit (the unit comes from the token)."""

    model_config = _example(
        id_number=LAN_ID,
        full_name="Nguyễn Thị Lan",
        date_of_birth="1990-05-01",
        product="comirnaty",
        lot="PF1",
        given_at="2021-08-02T09:00:00+07:00",
        site="left_arm",
        kind="primary",
    )

    id_number: IdNumber
    full_name: Name
    date_of_birth: date


class DoseCorrectionIn(DoseFields):
    """The dose's corrected fields; the whole history is checked again."""

    model_config = _example(
        id_number=LAN_ID,
        reason="wrong lot number entered",
        product="comirnaty",
        lot="PF2",
        given_at="2021-08-02T09:00:00+07:00",
        site="left_arm",
        kind="primary",
    )

    id_number: IdNumber
    reason: Reason


class DoseVoidIn(BaseModel):
    model_config = _example(id_number=LAN_ID, reason="recorded twice")

    id_number: IdNumber
    reason: Reason


class AdverseEventIn(BaseModel):
    model_config = _example(
        id_number=LAN_ID,
        onset="2021-08-02T15:00:00+07:00",
        severity="mild",
        description="sore arm, low fever",
    )

    id_number: IdNumber
    onset: AwareDatetime
    severity: Severity
    description: Text


class RecoveryIn(BaseModel):
    model_config = _example(id_number=LAN_ID, positive_test_on="2021-07-01")

    id_number: IdNumber
    positive_test_on: date


class DoseRecorded(BaseModel):
    dose_id: UUID = Field(examples=[DOSE_ID])
    dose_number: int = Field(examples=[1], description="Its place among the valid doses")
    deviations: list[str] = Field(
        examples=[[]], description="Codes of the rules the dose was recorded in spite of"
    )


class DoseCorrected(BaseModel):
    dose_id: UUID = Field(examples=[DOSE_ID])
    deviations: list[str] = Field(examples=[[]])


class DoseVoided(BaseModel):
    dose_id: UUID = Field(examples=[DOSE_ID])


class AdverseEventReported(BaseModel):
    dose_id: UUID = Field(examples=[DOSE_ID])
    severity: Severity


class RecoveryRecorded(BaseModel):
    positive_test_on: date


class LotIn(BaseModel):
    model_config = _example(product="comirnaty", lot_number="PF1", expires_on="2022-06-01")

    product: Product
    lot_number: LotNumber
    expires_on: date


class RecallIn(BaseModel):
    model_config = _example(reason="cold chain broken")

    reason: Reason


class LotChanged(BaseModel):
    lot: str = Field(examples=["PF1"])
    product: str = Field(examples=["comirnaty"])


R = TypeVar("R", bound=BaseModel)


class Accepted(BaseModel, Generic[R]):
    """A command's answer: the position of its events (for read-your-writes) and its result.

    A retry with the same ``Idempotency-Key`` answers the first result again, with the
    ``Idempotent-Replayed: true`` header and the store's position at the time of the retry.
    """

    position: str = Field(
        examples=["immunization:42"], description="CONTEXT:NOTIFICATION_ID of the last event"
    )
    result: R
