"""Times as the API and people see them.

The API answers ISO 8601 with an offset, always; people read Vietnam time (+07:00). One
rendering serves both: every API time is given at +07:00 (``2026-11-29T09:15:02.123456+07:00``),
the same instant an integrator parses with any ISO 8601 library. SQLite hands stored times back
without their zone; they were written in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

VIETNAM_TZ = timezone(timedelta(hours=7), "ICT")


def aware_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one is taken as UTC (how it was stored)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def api_time(moment: datetime) -> str:
    """ISO 8601 at +07:00 with its offset, e.g. ``2026-11-29T16:15:02+07:00``."""
    return aware_utc(moment).astimezone(VIETNAM_TZ).isoformat()


def api_time_or_none(moment: datetime | None) -> str | None:
    """:func:`api_time`, or ``None`` for no time."""
    return None if moment is None else api_time(moment)


def vietnam_time(moment: datetime) -> str:
    """``2026-11-27T14:05:09+07:00``: the form the rules ask for on the document."""
    return moment.astimezone(VIETNAM_TZ).replace(microsecond=0).isoformat()


def report_time(value: object) -> datetime | None:
    """An ISO 8601 time as a report carries it (a string, ``Z`` allowed) as a datetime, aware
    when the string has an offset; ``None`` when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def vietnam_date(value: object) -> str | None:
    """An ISO 8601 time (a report's string) as the Vietnam date ``dd/mm/yyyy``; ``None`` when
    absent or unreadable. A time without an offset is taken as it is."""
    moment = report_time(value)
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(VIETNAM_TZ)
    return moment.strftime("%d/%m/%Y")
