"""Which weekly report is due at `now`: pure arithmetic on a weekday, a time and a zone."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mailwatch.pipeline.weekly import MAX_CATCH_UP, Schedule, due_weeks

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_8 = Schedule(0, time(8, 0), BERLIN)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC)


def test_the_week_is_due_from_monday_eight_local_time():
    # Monday 08:00 in Berlin is 07:00 UTC in winter; a minute earlier the previous week is the latest.
    assert MONDAY_8.latest(berlin(2026, 11, 30, 8, 0)) == berlin(2026, 11, 30, 8, 0)
    assert MONDAY_8.latest(berlin(2026, 11, 30, 7, 59)) == berlin(2026, 11, 23, 8, 0)
    assert MONDAY_8.latest(berlin(2026, 12, 2, 15, 0)) == berlin(2026, 11, 30, 8, 0)


def test_a_week_is_seven_local_days_across_the_end_of_summer_time():
    # The week of 25 October has 169 hours, and still runs Monday 08:00 to Monday 08:00.
    period = MONDAY_8.week_before(berlin(2026, 10, 26, 8, 0))
    assert period.since == berlin(2026, 10, 19, 8, 0)
    assert period.until - period.since == timedelta(hours=169)


def test_nothing_is_due_twice_and_the_first_start_sends_only_the_latest_week():
    # Queued up to this Monday: nothing more; never queued: just the week that ended last.
    now = berlin(2026, 12, 2, 9, 0)
    assert due_weeks(MONDAY_8, now, last_queued=berlin(2026, 11, 30, 8, 0)) == []
    assert due_weeks(MONDAY_8, now, last_queued=None) == [berlin(2026, 11, 30, 8, 0)]


def test_after_downtime_every_missed_week_is_due_oldest_first():
    # Down from 10 November to 2 December: the weeks ending 16, 23 and 30 November all go out.
    due = due_weeks(MONDAY_8, berlin(2026, 12, 2, 9, 0), last_queued=berlin(2026, 11, 9, 8, 0))
    assert due == [berlin(2026, 11, 16, 8, 0), berlin(2026, 11, 23, 8, 0), berlin(2026, 11, 30, 8, 0)]
    long_gone = due_weeks(MONDAY_8, berlin(2026, 12, 2, 9, 0), last_queued=berlin(2025, 1, 6, 8, 0))
    assert len(long_gone) == MAX_CATCH_UP and long_gone[-1] == berlin(2026, 11, 30, 8, 0)
