"""Business time: opening hours, holidays, and deadlines that count only open time.

A `Calendar` is a week of local opening ranges in one IANA zone plus closed dates.
Everything is computed on the instant timeline: each day's ranges are turned into
aware instants with `zoneinfo` (so a DST change shortens or lengthens that day, and
no fixed UTC offset is ever assumed), and durations are counted along those
instants. Pure functions only; `None` as calendar means elapsed time, 24/7.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTES_PER_DAY = 24 * 60  # a range may end at 24:00, the next day's midnight
SEARCH_DAYS = 3660  # ten years of closed days ends the search: a calendar that never opens
ZERO = timedelta(0)


@dataclass(frozen=True)
class Calendar:
    """When a team works: per weekday (0 = Monday) ranges of local minutes, and closed dates."""

    name: str
    tz: ZoneInfo
    week: tuple[tuple[tuple[int, int], ...], ...]  # 7 entries of (start, end) minutes, end up to 1440
    closed: frozenset[date] = frozenset()

    @property
    def label(self) -> str:
        """How `threads --json` names this clock: 'business:office'."""
        return f"business:{self.name}"


def _local_instant(day: date, minute: int, tz: ZoneInfo) -> datetime:
    # 24:00 is the next day's midnight; fold=0 reads a time skipped or repeated by DST
    # with the offset before the change, so ranges stay ordered on the instant timeline.
    moment = datetime.combine(day, time(), tz) + timedelta(days=minute // MINUTES_PER_DAY)
    local = moment.replace(hour=(minute % MINUTES_PER_DAY) // 60, minute=minute % 60)
    return local.astimezone(UTC)


def _day_intervals(day: date, calendar: Calendar) -> Iterator[tuple[datetime, datetime]]:
    if day in calendar.closed:
        return
    for start, end in calendar.week[day.weekday()]:
        opens, closes = _local_instant(day, start, calendar.tz), _local_instant(day, end, calendar.tz)
        if closes > opens:  # a range wholly inside a skipped DST hour has no time in it
            yield opens, closes


def open_intervals(after: datetime, calendar: Calendar) -> Iterator[tuple[datetime, datetime]]:
    """The open intervals [opens, closes) that end after `after`, in order; touching ones merged."""
    day = after.astimezone(calendar.tz).date() - timedelta(days=1)  # yesterday's range may run past midnight
    pending: tuple[datetime, datetime] | None = None
    for offset in range(SEARCH_DAYS):
        for opens, closes in _day_intervals(day + timedelta(days=offset), calendar):
            if pending is not None and opens <= pending[1]:
                pending = (pending[0], max(pending[1], closes))
                continue
            if pending is not None and pending[1] > after:
                yield pending
            pending = (opens, closes)
    if pending is not None and pending[1] > after:
        yield pending
    raise ValueError(f"calendar {calendar.name!r} is never open in {SEARCH_DAYS} days after {after.isoformat()}")


def deadline(start: datetime, duration: timedelta, calendar: Calendar | None) -> datetime:
    """When `duration` of open time has passed since `start`; elapsed time without a calendar.

    Counting starts at the next opening when `start` is closed; a deadline that uses up
    an interval exactly falls on its closing time (09:00 + 8h is 17:00, not next morning).
    """
    if calendar is None or duration <= ZERO:
        return start + duration
    left = duration
    for opens, closes in open_intervals(start, calendar):
        begin = max(opens, start)
        if begin + left <= closes:
            return begin + left
        left -= closes - begin
    raise AssertionError("unreachable: open_intervals raises when it runs out")


def open_time_between(start: datetime, end: datetime, calendar: Calendar | None) -> timedelta:
    """Open time from `start` to `end` (negative when `end` is earlier): 'time left' in business time."""
    if end < start:
        return -open_time_between(end, start, calendar)
    if calendar is None:
        return end - start
    total = ZERO
    for opens, closes in open_intervals(start, calendar):
        if opens >= end:
            break
        total += min(closes, end) - max(opens, start)
    return total


def time_left(now: datetime, due: datetime, calendar: Calendar | None) -> timedelta:
    """Open time until `due`; once past it, the negative elapsed time a customer has waited since.

    Overdue is counted in real time: a deadline missed on Friday evening is not
    "overdue by 0m" all weekend.
    """
    return due - now if due <= now else open_time_between(now, due, calendar)


def is_open_at(moment: datetime, calendar: Calendar | None) -> bool:
    """Whether the team works at `moment` (always, without a calendar)."""
    if calendar is None:
        return True
    opens, _ = next(open_intervals(moment, calendar))
    return opens <= moment


def next_opening(moment: datetime, calendar: Calendar | None) -> datetime:
    """`moment` itself while open, else when the team next opens."""
    if calendar is None:
        return moment
    opens, _ = next(open_intervals(moment, calendar))
    return max(opens, moment)


def within_hours(moment: datetime, calendar: Calendar | None) -> datetime:
    """The earliest instant from `moment` on that is in hours, closing time included.

    For holding mail until opening: a step that falls due exactly at 17:00 on a business
    clock is still sent at 17:00, not the next morning.
    """
    if calendar is None:
        return moment
    opens, _ = next(open_intervals(moment - timedelta(microseconds=1), calendar))
    return max(opens, moment)
