"""Local time: statistics and the same-day rule count days in Asia/Ho_Chi_Minh."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")


def local_day(moment: datetime) -> date:
    return moment.astimezone(VIETNAM).date()
