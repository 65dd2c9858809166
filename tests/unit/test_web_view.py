"""Reading the snooze time a person picked on the page: in the mailbox's zone, in the future, bounded."""

from datetime import UTC, datetime

import pytest

from mailwatch.web.view import parse_until

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # the day before Berlin moves to summer time


def test_the_time_is_read_in_the_mailboxs_zone_across_a_daylight_saving_change():
    assert parse_until("2026-03-29T09:00", "Europe/Berlin", NOW) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert parse_until("2026-03-28T18:00:00", "Europe/Berlin", NOW) == datetime(2026, 3, 28, 17, 0, tzinfo=UTC)
    assert parse_until("2026-03-29T09:00", "America/New_York", NOW) == datetime(2026, 3, 29, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "tomorrow", "2026-03-29", "2026-03-29T09:00+02:00", "2026-13-01T09:00"])
def test_what_is_not_a_local_date_and_time_is_refused_with_a_reason(text):
    assert parse_until(text, "Europe/Berlin", NOW) == "Choose a date and time to snooze until."


def test_the_past_and_beyond_ninety_days_are_refused():
    assert "future" in parse_until("2026-03-28T13:00", "Europe/Berlin", NOW)  # 12:00 UTC: now, not later
    assert "90 days" in parse_until("2026-07-01T09:00", "Europe/Berlin", NOW)
    assert isinstance(parse_until("2026-06-25T09:00", "Europe/Berlin", NOW), datetime)
