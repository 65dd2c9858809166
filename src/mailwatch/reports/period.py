"""The period a report covers: `--since`/`--until` as dates or as "7d" back from now."""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

DEFAULT_DAYS = 7  # without --since, the last week
_DAYS_BACK = re.compile(r"(\d{1,5})d")


@dataclass(frozen=True)
class Period:
    """[since, until) in aware UTC, and the zone people read it in."""

    since: datetime
    until: datetime
    tz: tzinfo


def parse_when(text: str, tz: tzinfo, now: datetime, end: bool = False) -> datetime:
    """`YYYY-MM-DD` (local midnight; with `end`, the midnight after: the day is included) or `7d` before `now`."""
    days = _DAYS_BACK.fullmatch(text.strip())
    if days:
        return now - timedelta(days=int(days.group(1)))
    day = date.fromisoformat(text.strip())  # ValueError for anything else
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time(), tz).astimezone(UTC)


def build_period(since: str | None, until: str | None, tz: tzinfo, now: datetime) -> Period:
    """The period of `mailwatch report`; ValueError when it is empty or unreadable."""
    end = parse_when(until, tz, now, end=True) if until else now
    start = parse_when(since, tz, now) if since else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise ValueError(f"the period is empty: since {start:%Y-%m-%d %H:%M} UTC is not before until "
                         f"{end:%Y-%m-%d %H:%M} UTC")
    return Period(start, end, tz)
