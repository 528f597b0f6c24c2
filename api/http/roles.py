"""The roles a bearer token grants (see `api.http.security` for what each may do)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MEDICAL_STAFF = "medical_staff"
    CHECKPOINT_OFFICER = "checkpoint_officer"
    CITIZEN = "citizen"
    AUDITOR = "auditor"
    INTEGRATOR = "integrator"
