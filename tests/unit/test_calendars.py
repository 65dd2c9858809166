"""Calendars and per-mailbox policies: from the TOML to the clock each mailbox's threads run on."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mailwatch.businesstime import Calendar
from mailwatch.cli import thread_json
from mailwatch.config import load_settings
from mailwatch.db.engine import Database
from mailwatch.db.models import Thread
from mailwatch.pipeline.escalations import realign_schedule
from mailwatch.policies import EscalationPolicy, build_policies
from mailwatch.sla import ClockPolicy, due_steps, next_escalation_at, start_first_clock
from tests.unit.test_config import ENVIRON, problems_in, with_section, write  # noqa: F401 - the fixture

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = """
    [[calendar]]
    name = "office"
    timezone = "Europe/Berlin"
    hours = { mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-15:00" }
    holidays = ["2026-12-24", "2026-12-31"]
    public_holidays = { country = "DE", subdivision = "BE" }
"""
SALES = """
    [[mailbox]]
    name = "sales"
    address = "sales@acme.example"
      [mailbox.imap]
      host = "imap.acme.example"
      password_env = "IMAP_PASSWORD"
      [mailbox.sla]
      first_response = "4h"
      [[mailbox.escalation]]
      after = "3h"
      to = ["sales-lead@acme.example"]
      [mailbox.service]
      phone = "+1 800 555 0199"
"""
GLOBAL = """
    [sla]
    calendar = "office"
    first_response = "8h"
    next_response = "8h"

    [[escalation]]
    after = "6h"
    to = ["leads@acme.example"]
    deliver = "business-hours"
"""


def berlin(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=BERLIN).astimezone(UTC)


def test_calendar_joins_public_holidays_and_explicit_dates(write: Any) -> None:
    # Berlin's public holidays (Christmas, 8 March) and the team's own closed days.
    settings = load_settings(write(with_section(OFFICE + GLOBAL)), ENVIRON)
    calendar = settings.calendar("office").calendar
    assert {date(2026, 12, 24), date(2026, 12, 25), date(2026, 12, 26), date(2026, 3, 8)} <= calendar.closed
    assert calendar.week[4] == ((9 * 60, 15 * 60),) and calendar.week[5] == ()


def test_each_mailbox_gets_its_own_effective_policy(write: Any) -> None:
    # Sales overrides the deadline, steps and phone; it keeps the global calendar and next_response.
    policies = build_policies(load_settings(write(with_section(OFFICE + GLOBAL + SALES)), ENVIRON))
    support, sales = policies.for_mailbox("support"), policies.for_mailbox("sales")
    assert (support.clock.first_response, support.clock.steps) == (timedelta(hours=8), (timedelta(hours=6),))
    assert (sales.clock.first_response, sales.clock.steps) == (timedelta(hours=4), (timedelta(hours=3),))
    assert sales.clock.next_response == timedelta(hours=8) and sales.clock.label == "business:office"
    assert sales.escalation.recipients_of(1) == ("sales-lead@acme.example",)
    assert (sales.branding.phone, support.branding.phone) == ("+1 800 555 0199", "")
    assert sales.branding.tz == BERLIN and sales.ack.first_response == timedelta(hours=4)
    assert support.clock.holds == (support.clock.calendar,) and sales.clock.holds == (None,)
    assert policies.describe("sales") == (
        "mailbox sales: clock business:office, first response 4h, next response 8h, "
        "escalation 3h → sales-lead@acme.example, service 'Support'")
    assert "6h → leads@acme.example (in office hours)" in policies.describe("support")


def test_calendar_mistakes_are_config_errors(write: Any) -> None:
    # Across midnight, overlaps, unknown names, zones and countries: each reported where it is.
    bad = """
        [[calendar]]
        name = "night"
        timezone = "Mars/Olympus"
        hours = { mon = "22:00-06:00" }
    """
    problems = problems_in(write(with_section(bad)))
    assert any("calendar[0].timezone: unknown time zone" in line for line in problems), problems
    assert any("calendar[0].hours.mon: '22:00-06:00' ends before it starts" in line for line in problems), problems
    overlap = OFFICE.replace('fri = "09:00-15:00"', 'fri = "09:00-15:00,14:00-16:00"').replace('"DE"', '"XX"')
    problems = problems_in(write(with_section(overlap)))
    assert any("calendar[0].hours.fri: '14:00-16:00' overlaps" in line for line in problems), problems
    assert any("calendar[0].public_holidays: Country XX not available" in line for line in problems), problems
    problems = problems_in(write(with_section('[sla]\ncalendar = "office"\n')))
    assert problems == ["mailwatch.toml: sla.calendar: no [[calendar]] named 'office' (calendars: none defined)"]


def test_business_hours_delivery_needs_a_calendar(write: Any) -> None:
    # "business-hours" without any calendar would have no hours to wait for.
    steps = '[[escalation]]\nafter = "1h"\nto = ["a@acme.example"]\ndeliver = "business-hours"\n'
    problems = problems_in(write(with_section(steps)))
    assert problems == ["mailwatch.toml: escalation[0].deliver: 'business-hours' needs a calendar: set calendar "
                        "here or in [sla] (mailbox 'support' has none)"]


def test_twenty_four_hour_end_is_accepted(write: Any) -> None:
    # A late shift may end at 24:00; the next day can continue at 00:00.
    late = OFFICE.replace('mon = "09:00-17:00"', 'mon = "18:00-24:00", sun = "00:00-02:00"')
    settings = load_settings(write(with_section(late)), ENVIRON)
    assert settings.calendar("office").calendar.week[0] == ((18 * 60, 24 * 60),)


# -- steps on the clock ---------------------------------------------------------------

OFFICE_CAL = Calendar("office", BERLIN, (((9 * 60, 17 * 60),),) * 5 + ((), ()))


def test_a_held_step_takes_the_later_steps_with_it():
    # Step 1 waits for 09:00; step 2 (any time, due at midnight) must not overtake it.
    started = berlin(2026, 11, 26, 22, 0)
    steps = [timedelta(hours=1), timedelta(hours=2)]
    assert list(due_steps(started, berlin(2026, 11, 27, 0, 30), steps, 0, None, (OFFICE_CAL, None))) == []
    assert list(due_steps(started, berlin(2026, 11, 27, 9, 0), steps, 0, None, (OFFICE_CAL, None))) == [1, 2]
    assert next_escalation_at(started, steps, 1, None, (OFFICE_CAL, None)) == berlin(2026, 11, 27, 9, 0)


def test_steps_count_business_time_on_a_calendar():
    # Friday 16:30 + a 2h step on Mon–Fri 09–17: Monday 10:30, and not a minute before.
    started = berlin(2026, 12, 4, 16, 30)
    steps = [timedelta(hours=2)]
    assert next_escalation_at(started, steps, 0, OFFICE_CAL) == berlin(2026, 12, 7, 10, 30)
    assert list(due_steps(started, berlin(2026, 12, 7, 10, 29), steps, 0, OFFICE_CAL)) == []
    assert list(due_steps(started, berlin(2026, 12, 7, 10, 30), steps, 0, OFFICE_CAL)) == [1]


def test_threads_json_names_the_clock(write: Any) -> None:
    # `clock` says how deadline_at was counted, per mailbox.
    policies = build_policies(load_settings(write(with_section(OFFICE + GLOBAL)), ENVIRON))
    thread = Thread(id=1, mailbox="support", status="open", first_received_at=berlin(2026, 12, 4, 16, 30))
    assert thread_json(thread, policies)["clock"] == "business:office"
    assert thread_json(thread)["clock"] == "elapsed"


def test_reload_with_a_changed_calendar_recomputes_open_threads(tmp_path: Path) -> None:
    # Holidays added after the thread opened move its deadline and next step past them.
    db = Database(f"sqlite:///{tmp_path / 'mw.db'}")
    db.ensure_schema()
    started = berlin(2026, 12, 23, 16, 0)
    closed = frozenset({date(2026, 12, 24), date(2026, 12, 25)})
    before = ClockPolicy(timedelta(hours=2), steps=(timedelta(hours=3),), calendar=OFFICE_CAL, holds=(None,))
    after = ClockPolicy(timedelta(hours=2), steps=(timedelta(hours=3),),
                        calendar=Calendar("office", BERLIN, OFFICE_CAL.week, closed), holds=(None,))
    with db.session() as session:
        thread = Thread(mailbox="support", subject="s", customer_address="c@example.com", customer_name="",
                        first_received_at=started, message_count=1, created_at=started)
        start_first_clock(thread, started, before)
        session.add(thread)
    policy = build_policies_for(before)
    with db.session() as session:
        realign_schedule(session, policy)
        assert realign_schedule(session, policy) == 0  # unchanged: nothing to do
        assert session.get(Thread, thread.id).next_escalation_at == berlin(2026, 12, 24, 11, 0)
    with db.session() as session:
        assert realign_schedule(session, build_policies_for(after)) == 1
    with db.session() as session:
        thread = session.get(Thread, thread.id)
        assert thread.deadline_at == berlin(2026, 12, 28, 10, 0)
        assert thread.next_escalation_at == berlin(2026, 12, 28, 11, 0)
    db.dispose()


def build_policies_for(clock: ClockPolicy) -> EscalationPolicy:
    return EscalationPolicy(clock, (("lead@acme.example",),))
