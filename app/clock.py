"""The one place the processes read the clock; everything below takes time as an argument."""

from __future__ import annotations

from datetime import UTC, date, datetime

from rating.calendar import LOCAL_TZ


def now_utc() -> datetime:
    return datetime.now(UTC)


def today_local() -> date:
    return now_utc().astimezone(LOCAL_TZ).date()
