"""Local time: statistics and the same-day rule count days in Asia/Ho_Chi_Minh."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from domain.errors import InvalidValue

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")


def local_day(moment: datetime) -> date:
    return moment.astimezone(VIETNAM).date()


def utc(moment: datetime, field: str = "time") -> datetime:
    """Times are stored in UTC; a time without a zone is ambiguous and refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidValue(f"{field} needs a time zone (e.g. +07:00 or Z)", field=field)
    return moment.astimezone(UTC)
