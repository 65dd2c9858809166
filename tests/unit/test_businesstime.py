"""Business-time arithmetic: examples a user would check, and properties over many weeks."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwatch.businesstime import (
    Calendar,
    deadline,
    is_open_at,
    next_opening,
    open_time_between,
    time_left,
    within_hours,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NINE_TO_FIVE = ((9 * 60, 17 * 60),)
WEEKDAYS = (NINE_TO_FIVE,) * 5 + ((), ())
HOUR = timedelta(hours=1)


def office(tz: ZoneInfo = BERLIN, closed: frozenset[date] = frozenset(), week=WEEKDAYS) -> Calendar:
    return Calendar("office", tz, week, closed)


def at(tz: ZoneInfo, *fields: int) -> datetime:
    return datetime(*fields, tzinfo=tz).astimezone(UTC)


def test_friday_afternoon_plus_two_hours_is_monday_morning():
    # Fri 16:30 + 2h of Mon–Fri 09–17: 30 minutes on Friday, 90 on Monday.
    due = deadline(at(BERLIN, 2026, 12, 4, 16, 30), 2 * HOUR, office())
    assert due == at(BERLIN, 2026, 12, 7, 10, 30)
    assert f"{due.astimezone(BERLIN):%a %d %H:%M %Z}" == "Mon 07 10:30 CET"


def test_christmas_closure_is_skipped():
    # 23 Dec 16:00 + 2h with 24–26 Dec closed (26th is a Saturday anyway): Monday 28th, 10:00.
    christmas = frozenset({date(2026, 12, 24), date(2026, 12, 25), date(2026, 12, 26)})
    assert deadline(at(BERLIN, 2026, 12, 23, 16, 0), 2 * HOUR, office(closed=christmas)) == at(BERLIN, 2026, 12, 28, 10, 0)


def test_message_while_closed_starts_counting_at_opening():
    # Saturday mail: the clock starts Monday 09:00.
    assert deadline(at(BERLIN, 2026, 12, 5, 11, 0), HOUR, office()) == at(BERLIN, 2026, 12, 7, 10, 0)


def test_a_full_day_ends_at_closing_time_not_next_morning():
    # Using up an interval exactly falls on its closing time.
    assert deadline(at(BERLIN, 2026, 12, 7, 9, 0), 8 * HOUR, office()) == at(BERLIN, 2026, 12, 7, 17, 0)


def test_without_calendar_deadline_is_elapsed_time():
    # No calendar: 24/7, as before business hours existed.
    start = at(BERLIN, 2026, 12, 5, 23, 0)
    assert deadline(start, 8 * HOUR, None) == start + 8 * HOUR


def test_range_ending_at_midnight_joins_the_next_day():
    # "20:00-24:00" then "00:00-04:00" is one night shift across midnight.
    week = (((20 * 60, 24 * 60),), ((0, 4 * 60),), (), (), (), (), ())
    assert deadline(at(BERLIN, 2026, 12, 7, 23, 0), 3 * HOUR, office(week=week)) == at(BERLIN, 2026, 12, 8, 2, 0)


def test_spring_forward_day_has_one_hour_less():
    # Sunday 29 March 2026 in Berlin: 00:00-06:00 local is only 5 real hours.
    week = ((),) * 6 + (((0, 6 * 60),),)
    start = at(BERLIN, 2026, 3, 29, 0, 0)
    assert deadline(start, 5 * HOUR, office(week=week)) == at(BERLIN, 2026, 3, 29, 6, 0)
    assert open_time_between(start, at(BERLIN, 2026, 3, 29, 6, 0), office(week=week)) == 5 * HOUR


def test_fall_back_night_in_new_york_has_one_hour_more():
    # Sunday 1 November 2026 in New York: 00:00-06:00 local is 7 real hours.
    week = ((),) * 6 + (((0, 6 * 60),),)
    start = at(NEW_YORK, 2026, 11, 1, 0, 0)
    assert deadline(start, 7 * HOUR, office(NEW_YORK, week=week)) == at(NEW_YORK, 2026, 11, 1, 6, 0)


def test_open_and_next_opening():
    # Friday 17:00 is closed; the next opening is Monday 09:00.
    friday_close = at(BERLIN, 2026, 12, 4, 17, 0)
    assert is_open_at(at(BERLIN, 2026, 12, 4, 16, 59), office())
    assert not is_open_at(friday_close, office())
    assert next_opening(friday_close, office()) == at(BERLIN, 2026, 12, 7, 9, 0)
    assert within_hours(friday_close, office()) == friday_close  # a step due at closing still goes out
    assert within_hours(at(BERLIN, 2026, 12, 5, 3, 0), office()) == at(BERLIN, 2026, 12, 7, 9, 0)


def test_a_calendar_that_never_opens_is_an_error_not_a_hang():
    # Refused by config validation, but the arithmetic must not loop forever either.
    with pytest.raises(ValueError, match="never open"):
        deadline(at(BERLIN, 2026, 12, 7, 9, 0), HOUR, office(week=((),) * 7))


# -- properties ------------------------------------------------------------------------

DST_WEEKS = [  # the Mondays before the changes, and the calendars' zones
    (BERLIN, datetime(2026, 3, 23)), (BERLIN, datetime(2026, 10, 19)),
    (NEW_YORK, datetime(2026, 3, 2)), (NEW_YORK, datetime(2026, 10, 26)),
]
HOLIDAYS = frozenset({date(2026, 3, 27), date(2026, 10, 23), date(2026, 3, 5), date(2026, 10, 30)})
WEEKS = [  # Mon–Fri office hours, and a 7-day early/late shift that crosses the DST hours
    WEEKDAYS,
    (((1 * 60, 4 * 60), (8 * 60, 12 * 60), (13 * 60, 24 * 60)),) * 7,
]


@st.composite
def scenario(draw):
    tz, monday = draw(st.sampled_from(DST_WEEKS))
    calendar = office(tz, HOLIDAYS, draw(st.sampled_from(WEEKS)))
    offset = draw(st.integers(0, 14 * 24 * 60 - 1))
    start = (monday.replace(tzinfo=tz) + timedelta(minutes=offset)).astimezone(UTC)
    return calendar, start


durations = st.integers(1, 40 * 60).map(lambda minutes: timedelta(minutes=minutes))


def inside_closed_time(moment: datetime, calendar: Calendar) -> bool:
    # A deadline may fall on a closing time, but never strictly inside closed time.
    return not is_open_at(moment - timedelta(microseconds=1), calendar)


@settings(max_examples=300, deadline=None)
@given(scenario(), durations)
def test_deadline_is_never_inside_closed_time(case, duration):
    calendar, start = case
    due = deadline(start, duration, calendar)
    assert not inside_closed_time(due, calendar)
    local = due.astimezone(calendar.tz)
    assert local.weekday() < 5 or calendar.week[5]  # weekends skipped by the office week
    assert (local - timedelta(microseconds=1)).date() not in HOLIDAYS


@settings(max_examples=300, deadline=None)
@given(scenario(), durations, durations)
def test_durations_compose(case, first, second):
    calendar, start = case
    start = next_opening(start, calendar)  # when start is open
    assert deadline(deadline(start, first, calendar), second, calendar) == deadline(start, first + second, calendar)


@settings(max_examples=300, deadline=None)
@given(scenario(), durations, durations, st.integers(0, 3 * 24 * 60))
def test_deadline_is_monotone_in_start_and_duration(case, duration, more, later_minutes):
    calendar, start = case
    due = deadline(start, duration, calendar)
    assert deadline(start, duration + more, calendar) > due
    assert deadline(start + timedelta(minutes=later_minutes), duration, calendar) >= due


@settings(max_examples=300, deadline=None)
@given(scenario(), durations)
def test_open_time_between_start_and_deadline_is_the_duration(case, duration):
    calendar, start = case
    assert open_time_between(start, deadline(start, duration, calendar), calendar) == duration


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_next_opening_is_open_and_nothing_open_is_skipped(case):
    calendar, start = case
    opening = next_opening(start, calendar)
    assert is_open_at(opening, calendar)
    assert open_time_between(start, opening, calendar) == timedelta(0)


def test_time_left_is_business_time_but_overdue_is_real_time():
    # Friday 16:30 with a Monday 10:30 deadline: 2h of work left; Saturday after a Friday deadline: overdue.
    friday = at(BERLIN, 2026, 12, 4, 16, 30)
    assert time_left(friday, at(BERLIN, 2026, 12, 7, 10, 30), office()) == 2 * HOUR
    assert time_left(at(BERLIN, 2026, 12, 5, 10, 0), at(BERLIN, 2026, 12, 4, 17, 0), office()) == -17 * HOUR
