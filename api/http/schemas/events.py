"""The integrator feed: one versioned schema per event type, told apart by `type`.

Fields marked "identifiers scope" are present only when the token grants the
``identifiers`` scope (or for auditors); without it no ID number, name, phone, date of
birth, vehicle plate or user id is served. `docs/events.md` describes each type.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, get_args
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.http.schemas.queries import ActorOut
from domain.doses import DoseKind, InjectionSite, ScreeningOutcome, Severity
from domain.identity import Sex
from domain.mobility import Symptom, TestKind, TestOutcome, Transport, Verdict

SCOPED = "Only with the identifiers scope"


AreaOut = Annotated[
    str, Field(description="PROVINCE[.DISTRICT[.WARD]]", examples=["079.760.26734"])
]


class Subject(BaseModel):
    """The person an event is about."""

    pseudonym: str = Field(
        description="Stable, non-reversible key of the person", examples=["9f2c0e6a51d84b7c"]
    )
    id_number: str | None = Field(default=None, description=SCOPED, examples=["079190123456"])


class TripOut(BaseModel):
    origin: AreaOut
    destination: AreaOut
    travel_date: date
    transport: Transport
    vehicle_plate: str | None = Field(default=None, description=SCOPED)
    checkpoint: str | None


class TestOut(BaseModel):
    kind: TestKind
    outcome: TestOutcome
    sampled_at: AwareDatetime


class DeclarationOut(BaseModel):
    declaration_id: UUID
    trip: TripOut
    symptoms: list[Symptom]
    contact_with_confirmed_case: bool
    stayed_in_high_risk_area: bool
    test: TestOut | None
    declared_at: AwareDatetime
    valid_until: AwareDatetime


class CheckOut(BaseModel):
    checkpoint: str
    checked_at: AwareDatetime
    verdict: Verdict
    reasons: list[str]
    declaration_id: UUID | None


class DoseOut(BaseModel):
    dose_id: UUID
    product: str
    lot: str
    given_at: AwareDatetime
    unit: str
    vaccinator: str | None = Field(default=None, description=SCOPED)
    site: InjectionSite
    kind: DoseKind
    deviations: list[str]
    override_reason: str | None


class ScreeningOut(BaseModel):
    outcome: ScreeningOutcome
    screened_at: AwareDatetime
    unit: str
    postponed_until: date | None
    notes: str


class AdverseReportOut(BaseModel):
    dose_id: UUID
    onset: AwareDatetime
    severity: Severity
    description: str


# The data of each event type


class CitizenRegisteredData(BaseModel):
    person: str | None = Field(default=None, description=SCOPED)
    full_name: str | None = Field(default=None, description=SCOPED)
    date_of_birth: date | None = Field(default=None, description=SCOPED)
    sex: Sex
    residence: AreaOut
    phone: str | None = Field(default=None, description=SCOPED)


class ResidenceChangedData(BaseModel):
    residence: AreaOut


class ContactChangedData(BaseModel):
    phone: str | None = Field(default=None, description=SCOPED)


class RecordCorrectedData(BaseModel):
    reason: str
    corrected: list[Literal["full_name", "date_of_birth", "sex"]] = Field(
        description="The fields this correction changed"
    )
    full_name: str | None = Field(default=None, description=SCOPED)
    date_of_birth: date | None = Field(default=None, description=SCOPED)
    sex: Sex | None


class DiedData(BaseModel):
    died_on: date


class MovedToData(BaseModel):
    target_subject: str = Field(description="Pseudonym of the record the data moved to")
    target: str | None = Field(default=None, description=SCOPED)
    reason: str


class MergedFromData(BaseModel):
    source_subject: str = Field(description="Pseudonym of the record moved into this one")
    source: str | None = Field(default=None, description=SCOPED)
    reason: str


class RiskAssessedData(BaseModel):
    area: AreaOut
    level: Literal[1, 2, 3, 4]
    effective_from: AwareDatetime
    reason: str


class RiskLevelChangedData(BaseModel):
    level: Literal[1, 2, 3, 4]
    effective_from: AwareDatetime
    reason: str


class RecordOpenedData(BaseModel):
    person: str | None = Field(default=None, description=SCOPED)


class HealthDeclaredData(BaseModel):
    declaration: DeclarationOut


class CheckpointCheckedData(BaseModel):
    check: CheckOut


class LotRegisteredData(BaseModel):
    lot_number: str
    product: str
    expires_on: date


class LotRecalledData(BaseModel):
    reason: str
    at: AwareDatetime


class VaccinationRegisteredData(BaseModel):
    unit: str
    priority_group: int | None


class ScreenedData(BaseModel):
    screening: ScreeningOut


class DoseAdministeredData(BaseModel):
    dose: DoseOut


class DoseCorrectedData(BaseModel):
    dose: DoseOut
    reason: str


class DoseVoidedData(BaseModel):
    dose_id: UUID
    reason: str


class AdverseEventReportedData(BaseModel):
    report: AdverseReportOut


class RecoveryRecordedData(BaseModel):
    positive_test_on: date


class RecordMovedToData(BaseModel):
    target_subject: str = Field(description="Pseudonym of the person the history moved to")
    target: str | None = Field(default=None, description=SCOPED)
    reason: str


class HistoryReceivedData(BaseModel):
    source_subject: str = Field(description="Pseudonym of the person the history came from")
    source: str | None = Field(default=None, description=SCOPED)
    doses: list[DoseOut]
    screenings: list[ScreeningOut]
    adverse_events: list[AdverseReportOut]
    recovered_on: date | None
    reason: str


# The events


class FeedEventBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="CONTEXT:NOTIFICATION_ID", examples=["immunization:42"])
    schema_version: Literal[1] = Field(description="Version of this type's schema")
    recorded_at: AwareDatetime
    subject: Subject | None = Field(description="Null for lots and area risk levels")
    actor: ActorOut | None


class CitizenRegistered(FeedEventBase):
    type: Literal["Citizen.Registered"]
    context: Literal["population"]
    data: CitizenRegisteredData


class CitizenResidenceChanged(FeedEventBase):
    type: Literal["Citizen.ResidenceChanged"]
    context: Literal["population"]
    data: ResidenceChangedData


class CitizenContactChanged(FeedEventBase):
    type: Literal["Citizen.ContactChanged"]
    context: Literal["population"]
    data: ContactChangedData


class CitizenRecordCorrected(FeedEventBase):
    type: Literal["Citizen.RecordCorrected"]
    context: Literal["population"]
    data: RecordCorrectedData


class CitizenDied(FeedEventBase):
    type: Literal["Citizen.Died"]
    context: Literal["population"]
    data: DiedData


class CitizenMovedTo(FeedEventBase):
    type: Literal["Citizen.MovedTo"]
    context: Literal["population"]
    data: MovedToData


class CitizenMergedFrom(FeedEventBase):
    type: Literal["Citizen.MergedFrom"]
    context: Literal["population"]
    data: MergedFromData


class AreaRiskAssessed(FeedEventBase):
    type: Literal["AreaRisk.Assessed"]
    context: Literal["mobility"]
    data: RiskAssessedData


class AreaRiskLevelChanged(FeedEventBase):
    type: Literal["AreaRisk.LevelChanged"]
    context: Literal["mobility"]
    data: RiskLevelChangedData


class MobilityRecordOpened(FeedEventBase):
    type: Literal["MobilityRecord.Opened"]
    context: Literal["mobility"]
    data: RecordOpenedData


class MobilityRecordHealthDeclared(FeedEventBase):
    type: Literal["MobilityRecord.HealthDeclared"]
    context: Literal["mobility"]
    data: HealthDeclaredData


class MobilityRecordCheckpointChecked(FeedEventBase):
    type: Literal["MobilityRecord.CheckpointChecked"]
    context: Literal["mobility"]
    data: CheckpointCheckedData


class LotRegistered(FeedEventBase):
    type: Literal["Lot.Registered"]
    context: Literal["immunization"]
    data: LotRegisteredData


class LotRecalled(FeedEventBase):
    type: Literal["Lot.Recalled"]
    context: Literal["immunization"]
    data: LotRecalledData


class VaccinationRecordOpened(FeedEventBase):
    type: Literal["VaccinationRecord.Opened"]
    context: Literal["immunization"]
    data: RecordOpenedData


class VaccinationRecordRegistered(FeedEventBase):
    type: Literal["VaccinationRecord.Registered"]
    context: Literal["immunization"]
    data: VaccinationRegisteredData


class VaccinationRecordScreened(FeedEventBase):
    type: Literal["VaccinationRecord.Screened"]
    context: Literal["immunization"]
    data: ScreenedData


class VaccinationRecordDoseAdministered(FeedEventBase):
    type: Literal["VaccinationRecord.DoseAdministered"]
    context: Literal["immunization"]
    data: DoseAdministeredData


class VaccinationRecordDoseCorrected(FeedEventBase):
    type: Literal["VaccinationRecord.DoseCorrected"]
    context: Literal["immunization"]
    data: DoseCorrectedData


class VaccinationRecordDoseVoided(FeedEventBase):
    type: Literal["VaccinationRecord.DoseVoided"]
    context: Literal["immunization"]
    data: DoseVoidedData


class VaccinationRecordAdverseEventReported(FeedEventBase):
    type: Literal["VaccinationRecord.AdverseEventReported"]
    context: Literal["immunization"]
    data: AdverseEventReportedData


class VaccinationRecordRecoveryRecorded(FeedEventBase):
    type: Literal["VaccinationRecord.RecoveryRecorded"]
    context: Literal["immunization"]
    data: RecoveryRecordedData


class VaccinationRecordMovedTo(FeedEventBase):
    type: Literal["VaccinationRecord.MovedTo"]
    context: Literal["immunization"]
    data: RecordMovedToData


class VaccinationRecordHistoryReceived(FeedEventBase):
    type: Literal["VaccinationRecord.HistoryReceived"]
    context: Literal["immunization"]
    data: HistoryReceivedData


FEED_EVENT_MODELS: tuple[type[FeedEventBase], ...] = (
    CitizenRegistered,
    CitizenResidenceChanged,
    CitizenContactChanged,
    CitizenRecordCorrected,
    CitizenDied,
    CitizenMovedTo,
    CitizenMergedFrom,
    AreaRiskAssessed,
    AreaRiskLevelChanged,
    MobilityRecordOpened,
    MobilityRecordHealthDeclared,
    MobilityRecordCheckpointChecked,
    LotRegistered,
    LotRecalled,
    VaccinationRecordOpened,
    VaccinationRecordRegistered,
    VaccinationRecordScreened,
    VaccinationRecordDoseAdministered,
    VaccinationRecordDoseCorrected,
    VaccinationRecordDoseVoided,
    VaccinationRecordAdverseEventReported,
    VaccinationRecordRecoveryRecorded,
    VaccinationRecordMovedTo,
    VaccinationRecordHistoryReceived,
)

FeedEvent = Annotated[
    CitizenRegistered
    | CitizenResidenceChanged
    | CitizenContactChanged
    | CitizenRecordCorrected
    | CitizenDied
    | CitizenMovedTo
    | CitizenMergedFrom
    | AreaRiskAssessed
    | AreaRiskLevelChanged
    | MobilityRecordOpened
    | MobilityRecordHealthDeclared
    | MobilityRecordCheckpointChecked
    | LotRegistered
    | LotRecalled
    | VaccinationRecordOpened
    | VaccinationRecordRegistered
    | VaccinationRecordScreened
    | VaccinationRecordDoseAdministered
    | VaccinationRecordDoseCorrected
    | VaccinationRecordDoseVoided
    | VaccinationRecordAdverseEventReported
    | VaccinationRecordRecoveryRecorded
    | VaccinationRecordMovedTo
    | VaccinationRecordHistoryReceived,
    Field(discriminator="type"),
]


def _literal(model: type[FeedEventBase], field: str) -> str:
    (value,) = get_args(model.model_fields[field].annotation)
    return str(value)


EVENT_CONTEXTS: dict[str, str] = {
    _literal(model, "type"): _literal(model, "context") for model in FEED_EVENT_MODELS
}
"""Context of each event type the feed serves; the stored topic is ``vaxreg.CONTEXT:TYPE``."""


def topic_of(event_type: str) -> str:
    return f"vaxreg.{EVENT_CONTEXTS[event_type]}:{event_type}"


class FeedPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "id": "immunization:7",
                            "type": "VaccinationRecord.DoseAdministered",
                            "context": "immunization",
                            "schema_version": 1,
                            "recorded_at": "2021-08-02T02:00:00+00:00",
                            "subject": {"pseudonym": "9f2c0e6a51d84b7c8e0c2a4f1b3d5e7f"},
                            "actor": {"role": "medical_staff", "unit": "79-HCM-001"},
                            "data": {
                                "dose": {
                                    "dose_id": "005a8087-2e09-4a2a-90b6-f93e4fb5c59f",
                                    "product": "comirnaty",
                                    "lot": "PF1",
                                    "given_at": "2021-08-02T02:00:00+00:00",
                                    "unit": "79-HCM-001",
                                    "site": "left_arm",
                                    "kind": "primary",
                                    "deviations": [],
                                    "override_reason": None,
                                }
                            },
                        }
                    ],
                    "next": "eyJwb3B1bGF0aW9uIjowLCJtb2JpbGl0eSI6MCwiaW1tdW5pemF0aW9uIjo3fQ",
                    "more": False,
                }
            ]
        }
    )

    events: list[FeedEvent]
    next: str = Field(description="Pass as `after` to continue; opaque")
    more: bool = Field(description="True when more events were already waiting")
