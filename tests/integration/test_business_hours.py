"""Business hours, per-mailbox policies and follow-ups, against real Dovecot and aiosmtpd.

The service's clock is injected (`Clock`), so a weekend or a night passes in one call.
Dates are in the past: Dovecot stores a future INTERNALDATE as the time of APPEND.
"""

import asyncio
import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from mailwatch.cli import main
from mailwatch.config import load_settings
from mailwatch.db.models import Thread
from mailwatch.service import Service
from tests.integration.test_escalations import TRUSTED_MX, Clock, staff_reply
from tests.mailfactory import customer_mail

BERLIN = ZoneInfo("Europe/Berlin")
SHIPPED = Path(__file__).parents[2] / "deploy" / "mailwatch.toml"
OFFICE = """
[[calendar]]
name = "office"
timezone = "Europe/Berlin"
hours = { mon = "09:00-17:00", tue = "09:00-17:00", wed = "09:00-17:00", thu = "09:00-17:00", fri = "09:00-17:00" }
holidays = ["2026-12-24", "2026-12-25"]
"""


def berlin(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=BERLIN).astimezone(UTC)


@pytest.fixture
def service_for(config_file, smtp_sink, db_for):
    """A factory: a prepared Service for a config with `extra` appended, on an injected clock."""

    def make(extra: str, now: datetime, **kwargs) -> tuple[Service, Clock]:
        clock = Clock(now)
        kwargs.setdefault("service_extra", TRUSTED_MX)  # staff replies come authenticated by Acme's MX
        settings = load_settings(config_file(extra=extra, smtp=smtp_sink, **kwargs))
        service = Service(settings, db_for(settings), clock=clock)
        service.prepare()
        return service, clock

    return make


def cycle_at(service: Service, clock: Clock, now: datetime):
    clock.now = now
    return asyncio.run(service.run_once())


def threads_of(service: Service) -> dict[str, Thread]:
    with service.db.session() as session:
        return {thread.mailbox: thread for thread in session.scalars(select(Thread))}


def test_ack_promises_the_business_deadline_in_local_time(dovecot, imap_user, service_for, smtp_sink):
    # Friday 16:30 + 2h of Mon–Fri 09–17 Berlin: the customer is promised Monday 10:30 CET.
    sla = OFFICE + '[sla]\ncalendar = "office"\nfirst_response = "2h"\n'
    service, clock = service_for(sla, berlin(2026, 11, 27, 16, 31), ack=True)
    dovecot.append(imap_user, customer_mail(1), msg_time=berlin(2026, 11, 27, 16, 30))
    cycle_at(service, clock, berlin(2026, 11, 27, 16, 31))
    (ack,) = smtp_sink.wait_for(1)
    assert "Monday 30 November 2026, 10:30 CET" in ack.message.get_body(("plain",)).get_content()
    assert threads_of(service)["support"].deadline_at == berlin(2026, 11, 30, 10, 30)


def test_business_hours_step_due_at_night_goes_out_at_opening(dovecot, imap_user, service_for, smtp_sink):
    # An elapsed 1h step due at 23:00 waits for 09:00; step 2, due at midnight, goes with it, once.
    steps = OFFICE + """
[sla]
first_response = "24h"

[[escalation]]
after = "1h"
to = ["lead@acme.example"]
deliver = "business-hours"
calendar = "office"

[[escalation]]
after = "2h"
to = ["lead@acme.example", "manager@acme.example"]
"""
    arrived = berlin(2026, 11, 26, 22, 0)  # Thursday night
    service, clock = service_for(steps, arrived)
    dovecot.append(imap_user, customer_mail(1), msg_time=arrived)
    cycle_at(service, clock, arrived + timedelta(minutes=1))
    assert threads_of(service)["support"].next_escalation_at == berlin(2026, 11, 27, 9, 0)
    cycle_at(service, clock, berlin(2026, 11, 27, 0, 30))
    cycle_at(service, clock, berlin(2026, 11, 27, 8, 59))
    assert smtp_sink.received == []
    cycle_at(service, clock, berlin(2026, 11, 27, 9, 0))
    assert sorted(mail.recipients for mail in smtp_sink.received) == [("lead@acme.example",), ("manager@acme.example",)]
    cycle_at(service, clock, berlin(2026, 11, 27, 12, 0))
    assert len(smtp_sink.received) == 2  # one digest per recipient, never again


SALES = """
[sla]
first_response = "24h"

[[escalation]]
after = "20h"
to = ["support-lead@acme.example"]

[[mailbox]]
name = "sales"
address = "sales@acme.example"
folder = "Sales"
  [mailbox.sla]
  first_response = "4h"
  [[mailbox.escalation]]
  after = "3h"
  to = ["sales-lead@acme.example"]
  [mailbox.service]
  name = "Acme Sales"
  [mailbox.imap]
  host = "127.0.0.1"
  port = {port}
  security = "none"
  username = "{user}"
  password_file = "{password_file}"
"""


def test_sales_and_support_escalate_to_their_own_leads(dovecot, imap_user, service_for, smtp_sink, tmp_path):
    # Each mailbox's threads run on its own deadline and steps, and page its own lead.
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    extra = SALES.format(port=dovecot.port, user=imap_user, password_file=tmp_path / "imap-password")
    service, clock = service_for(extra, t0)
    dovecot.append(imap_user, customer_mail(1), msg_time=t0)
    dovecot.append(imap_user, customer_mail(2), folder="Sales", msg_time=t0)
    cycle_at(service, clock, t0 + timedelta(minutes=1))
    threads = threads_of(service)
    assert threads["sales"].deadline_at == t0 + timedelta(hours=4)
    assert threads["support"].deadline_at == t0 + timedelta(hours=24)
    cycle_at(service, clock, t0 + timedelta(hours=3))
    assert [mail.recipients for mail in smtp_sink.received] == [("sales-lead@acme.example",)]
    cycle_at(service, clock, t0 + timedelta(hours=20))
    assert [mail.recipients for mail in smtp_sink.received] == [("sales-lead@acme.example",),
                                                                ("support-lead@acme.example",)]
    assert "Question number 2" in smtp_sink.received[0].message["Subject"]


def shipped_sla() -> str:
    # The shipped file's own [sla] and steps, so this test follows whatever it ships.
    shipped = tomllib.loads(SHIPPED.read_text())
    lines = ["[sla]", *(f'{key} = "{value}"' for key, value in shipped["sla"].items())]
    for step in shipped["escalation"]:
        to = ", ".join(f'"{address}"' for address in step["to"])
        lines += ["[[escalation]]", f'after = "{step["after"]}"', f"to = [{to}]"]
    return "\n" + "\n".join(lines) + "\n"


def test_follow_up_after_an_answer_gets_a_new_deadline_with_the_shipped_configuration(
        dovecot, imap_user, service_for, smtp_sink):
    # The shipped next_response puts a customer's follow-up on the clock again, and it escalates.
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    service, clock = service_for(shipped_sla(), t0)
    dovecot.append(imap_user, customer_mail(1), msg_time=t0)
    dovecot.append(imap_user, staff_reply("<q1.customer@example.com>"), msg_time=t0 + timedelta(hours=1))
    cycle_at(service, clock, t0 + timedelta(hours=1, minutes=5))
    follow_up = customer_mail(1).replace(b"<q1.customer@example.com>", b"<q1b.customer@example.com>")
    follow_up = follow_up.replace(b"Subject: Question number 1", b"Subject: Re: Question number 1 [#1001]")
    # With authserv_ids set, a ticket tag joins only its authenticated customer.
    follow_up = b"Authentication-Results: mx.acme.example; dkim=pass header.d=example.com\r\n" + follow_up
    dovecot.append(imap_user, follow_up, msg_time=t0 + timedelta(hours=2))
    cycle_at(service, clock, t0 + timedelta(hours=2, minutes=5))
    thread = threads_of(service)["support"]
    assert (thread.status, thread.clock) == ("open", 2)
    assert thread.deadline_at == t0 + timedelta(hours=2) + service.settings.sla.next_response
    cycle_at(service, clock, t0 + timedelta(hours=2) + service.settings.escalations[0].after)
    assert [mail.recipients for mail in smtp_sink.received] == [tuple(service.settings.escalations[0].to)]


def test_check_prints_each_mailbox_policy_and_threads_json_names_the_clock(
        dovecot, imap_user, config_file, smtp_sink, tmp_path, capsys):
    # One line per mailbox in `check`; `clock` beside `deadline_at` in `threads --json`.
    extra = OFFICE + '[sla]\ncalendar = "office"\nfirst_response = "8h"\n' + SALES.replace(
        "[sla]\nfirst_response = \"24h\"\n", "").format(port=dovecot.port, user=imap_user,
                                                       password_file=tmp_path / "imap-password")
    path = config_file(extra=extra.replace('[[escalation]]\nafter = "20h"\nto = ["support-lead@acme.example"]\n', ""),
                       smtp=smtp_sink)
    assert main(["--config", str(path), "check", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "mailbox support: clock business:office, first response 8h, next response none, escalation none" in out
    assert "mailbox sales: clock business:office, first response 4h, next response none, " \
           "escalation 3h → sales-lead@acme.example, service 'Acme Sales'" in out
    dovecot.append(imap_user, customer_mail(1), folder="Sales", msg_time=berlin(2026, 11, 27, 16, 30))
    assert main(["--config", str(path), "poll"]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "threads", "--json"]) == 0
    (thread,) = json.loads(capsys.readouterr().out)
    assert (thread["mailbox"], thread["clock"], thread["deadline_at"]) == ("sales", "business:office",
                                                                          "2026-11-30T11:30:00Z")  # 12:30 CET
