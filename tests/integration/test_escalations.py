"""Deadlines, staff responses and escalations against real Dovecot and aiosmtpd.

The service's clock is injected, so a 24-hour SLA runs in milliseconds; one test
runs the real daemon with an SLA of seconds to check the timing end to end.
"""

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from mailwatch.config import load_settings
from mailwatch.db.models import Escalation, Message, Thread
from mailwatch.imap import FolderStatus
from mailwatch.service import Service, open_imap
from tests.mailfactory import customer_mail

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SLA = """
[sla]
first_response = "24h"
next_response = "8h"
sweep_interval = "30s"

[[escalation]]
after = "20h"
to = ["lead@acme.example"]

[[escalation]]
after = "24h"
to = ["manager@acme.example", "lead@acme.example"]
"""


class Clock:
    """A settable clock for the service: tests move time, nobody sleeps."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now



TRUSTED_MX = 'authserv_ids = ["mx.acme.example"]'  # the test mailbox's receiving server


def staff_reply(to_message_id: str, sender: str = "Alice Nguyen <alice@acme.example>", n: int = 1,
                dmarc: str | None = "pass") -> bytes:
    """A staff reply as Acme's MX delivers it: with its own Authentication-Results on top."""
    message = EmailMessage()
    if dmarc is not None:
        domain = sender.rstrip(">").rpartition("@")[2]
        message["Authentication-Results"] = f"mx.acme.example; dmarc={dmarc} (p=reject dis=none) header.from={domain}"
    message["From"] = sender
    message["To"] = "customer@example.com"
    message["Subject"] = "Re: your question"
    message["Message-ID"] = f"<reply{n}@acme.example>"
    message["In-Reply-To"] = to_message_id
    message["References"] = to_message_id
    message.set_content("We are on it.")
    return message.as_bytes()


@pytest.fixture
def sla_service(config_file, smtp_sink, db_for):
    """A Service with the test SLA, an injected clock, and the sink as SMTP server."""
    clock = Clock(T0)

    def make(mailbox_extra: str = "", service_extra: str = TRUSTED_MX) -> tuple[Service, Clock]:
        settings = load_settings(config_file(extra=SLA, smtp=smtp_sink, mailbox_extra=mailbox_extra,
                                             service_extra=service_extra))
        service = Service(settings, db_for(settings), clock=clock)
        service.prepare()
        return service, clock

    return make


def cycle_at(service: Service, clock: Clock, offset: timedelta):
    """One full cycle at T0 + offset."""
    clock.now = T0 + offset
    return asyncio.run(service.run_once())


def thread_of(service: Service) -> Thread:
    with service.db.session() as session:
        return session.scalars(select(Thread)).one()


def test_unanswered_thread_escalates_step_one_then_step_two_once_each(dovecot, imap_user, sla_service, smtp_sink):
    # Step 1 at 20h to the lead, step 2 at 24h to manager and lead; each exactly once.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    cycle_at(service, clock, timedelta(hours=19, minutes=59))
    assert smtp_sink.received == []
    cycle_at(service, clock, timedelta(hours=20))
    assert [m.recipients for m in smtp_sink.received] == [("lead@acme.example",)]
    cycle_at(service, clock, timedelta(hours=21))
    assert len(smtp_sink.received) == 1
    cycle_at(service, clock, timedelta(hours=24))
    assert sorted(m.recipients[0] for m in smtp_sink.received) == [
        "lead@acme.example", "lead@acme.example", "manager@acme.example"]
    cycle_at(service, clock, timedelta(hours=48))
    assert len(smtp_sink.received) == 3
    assert thread_of(service).escalation_level == 2 and thread_of(service).next_escalation_at is None


def test_escalation_email_tells_a_lead_what_to_do(dovecot, imap_user, sla_service, smtp_sink):
    # Ticket, customer, timing, step, message count, the customer's words and the command.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))  # mailwatch was running when it arrived
    cycle_at(service, clock, timedelta(hours=24, minutes=30))
    (mail, *_) = smtp_sink.to("manager@acme.example")
    message = mail.message
    text = message.get_body(("plain",)).get_content()
    assert message["Subject"].startswith("[Acme Support] OVERDUE by 30m: #1001 Question number 1")
    for fact in ("#1001", "customer1@example.com", "support", "Step:      2 of 2", "Messages:  1",
                 "Hello, this is question 1.", "mailwatch thread answered 1001", "Friday 20 November 2026, 10:00 CET"):
        assert fact in text, fact
    assert message["Auto-Submitted"] == "auto-generated"
    assert "mailwatch thread answered 1001" in message.get_body(("html",)).get_content()


def test_staff_address_reply_stops_the_clock(dovecot, imap_user, sla_service, smtp_sink):
    # A staff member's reply in the inbox answers the thread: no escalation later.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    dovecot.append(imap_user, staff_reply("<q1.customer@example.com>"), msg_time=T0 + timedelta(hours=2))
    cycle_at(service, clock, timedelta(hours=3))
    cycle_at(service, clock, timedelta(hours=30))
    thread = thread_of(service)
    assert (thread.status, thread.answered_via, thread.answered_at) == ("answered", "staff-address", T0 + timedelta(hours=2))
    assert thread.answered_auth == "dmarc"
    assert smtp_sink.received == []


def test_reply_in_sent_folder_stops_the_clock(dovecot, imap_user, sla_service, smtp_sink):
    # A reply filed in the Sent folder (from the shared address) answers its thread.
    service, clock = sla_service('sent_folder = "Sent"')
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(hours=1))
    reply = staff_reply("<q1.customer@example.com>", sender="Acme Support <support@acme.example>")
    dovecot.append(imap_user, reply, folder="Sent", msg_time=T0 + timedelta(hours=3))
    cycle_at(service, clock, timedelta(hours=4))
    cycle_at(service, clock, timedelta(hours=30))
    thread = thread_of(service)
    assert (thread.status, thread.answered_via, thread.answered_at) == ("answered", "sent-folder", T0 + timedelta(hours=3))
    assert smtp_sink.received == []


def test_answered_flag_stops_the_clock_via_condstore(dovecot, imap_user, sla_service, smtp_sink):
    # A mail client's \\Answered flag, found with CHANGEDSINCE, answers the thread when first seen.
    service, clock = sla_service()
    uid = dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(hours=1))
    with dovecot.client(imap_user) as client:
        client.select_folder("INBOX")
        client.add_flags([uid], [b"\\Answered"])
    cycle_at(service, clock, timedelta(hours=5))
    cycle_at(service, clock, timedelta(hours=30))
    thread = thread_of(service)
    assert (thread.status, thread.answered_via, thread.answered_at) == ("answered", "flag", T0 + timedelta(hours=5))
    assert smtp_sink.received == []


def test_answered_flag_found_without_condstore_by_rereading_open_threads(dovecot, imap_user, sla_service):
    # Servers without CONDSTORE: the flags of open threads' messages are read again.
    service, clock = sla_service()
    uid = dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(hours=1))
    with dovecot.client(imap_user) as client:
        client.select_folder("INBOX")
        client.add_flags([uid], [b"\\Answered"])
    connection = open_imap(service.settings.mailboxes[0])
    try:
        status = connection.select("INBOX")
        ctx = replace(service.folder_context(service.settings.mailboxes[0], "INBOX"), uidvalidity=status.uidvalidity)
        no_condstore = FolderStatus(status.uidvalidity, status.uidnext, status.exists, highest_modseq=None)
        assert service.folders.sync_flags(connection, ctx, no_condstore, since_modseq=None) == 1
    finally:
        connection.close()
    assert thread_of(service).answered_via == "flag"


def test_answered_by_command_stops_the_clock(dovecot, imap_user, sla_service, smtp_sink):
    # `mailwatch thread answered` for replies made by phone or another channel.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(hours=1))
    assert service.set_thread_status(1001, "answered").status == "answered"
    cycle_at(service, clock, timedelta(hours=30))
    assert thread_of(service).answered_via == "command" and smtp_sink.received == []


def test_customer_reply_after_answer_reopens_and_escalates_again(dovecot, imap_user, sla_service, smtp_sink):
    # A new customer message after an answer starts clock 2 with the next_response deadline.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    dovecot.append(imap_user, staff_reply("<q1.customer@example.com>"), msg_time=T0 + timedelta(hours=1))
    cycle_at(service, clock, timedelta(hours=1, minutes=5))
    follow_up = customer_mail(1).replace(b"<q1.customer@example.com>", b"<q1b.customer@example.com>")
    follow_up = follow_up.replace(b"Subject: Question number 1", b"Subject: Re: Question number 1 [#1001]")
    # The tag joins the customer's thread because Acme's MX authenticated the customer's From.
    follow_up = b"Authentication-Results: mx.acme.example; dkim=pass header.d=example.com\r\n" + follow_up
    dovecot.append(imap_user, follow_up, msg_time=T0 + timedelta(hours=2))
    cycle_at(service, clock, timedelta(hours=2, minutes=5))
    thread = thread_of(service)
    assert (thread.status, thread.clock, thread.deadline_at) == ("open", 2, T0 + timedelta(hours=10))
    cycle_at(service, clock, timedelta(hours=22))
    assert [m.recipients for m in smtp_sink.received] == [("lead@acme.example",)]
    with service.db.session() as session:
        assert session.execute(select(Escalation.clock, Escalation.step)).all() == [(2, 1)]


def test_restarts_neither_repeat_nor_miss_an_escalation(dovecot, imap_user, sla_service, smtp_sink):
    # Each restart is a new Service on the same database: every step still goes out exactly once.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))  # mailwatch was running when it arrived
    cycle_at(service, clock, timedelta(hours=20, seconds=1))
    restarted, _ = sla_service()
    cycle_at(restarted, clock, timedelta(hours=20, seconds=2))
    assert len(smtp_sink.received) == 1
    again, _ = sla_service()
    cycle_at(again, clock, timedelta(hours=26))
    assert sorted(m.recipients[0] for m in smtp_sink.received) == [
        "lead@acme.example", "lead@acme.example", "manager@acme.example"]


def test_steps_missed_during_downtime_are_all_sent(dovecot, imap_user, sla_service, smtp_sink):
    # Down through both steps: the lead still hears about step 1, the manager about step 2.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))  # mailwatch was running when it arrived
    cycle_at(service, clock, timedelta(hours=30))
    assert len(smtp_sink.to("manager@acme.example")) == 1
    (digest,) = smtp_sink.to("lead@acme.example")  # steps 1 and 2 together, in one email
    assert digest.message.get_body(("plain",)).get_content().count("#1001  Question number 1") == 2


def test_first_start_on_a_full_inbox_pages_nobody_about_old_mail(dovecot, imap_user, sla_service, smtp_sink):
    # Installed on an inbox with three-day-old mail: it is logged and open, but escalates nobody.
    service, clock = sla_service()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(days=3))
    cycle_at(service, clock, timedelta(days=3, hours=1))
    thread = thread_of(service)
    assert (thread.status, thread.escalation_level, thread.next_escalation_at) == ("open", 2, None)
    assert smtp_sink.received == []


def test_threads_crossing_a_step_together_make_one_digest_per_recipient(dovecot, imap_user, sla_service, smtp_sink):
    # Five threads due in one sweep: the lead gets one email listing all five, not five emails.
    service, clock = sla_service()
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(5)], msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))  # mailwatch was running when it arrived
    cycle_at(service, clock, timedelta(hours=20, minutes=1))
    (digest,) = smtp_sink.received
    text = digest.message.get_body(("plain",)).get_content()
    assert all(f"#{ticket}" in text for ticket in range(1001, 1006))
    assert "5 conversations need an answer" in text and "(+4 more)" in digest.message["Subject"]
    with service.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Escalation)) == 5


def test_daemon_escalates_on_time_with_an_sla_of_seconds(dovecot, imap_user, config_file, smtp_sink, db_for):
    # The real daemon: step 1 after 2 s and step 2 after 4 s, each within one sweep interval.
    extra = """
    [sla]
    first_response = "4s"
    sweep_interval = "0.5s"

    [[escalation]]
    after = "2s"
    to = ["lead@acme.example"]

    [[escalation]]
    after = "4s"
    to = ["manager@acme.example"]
    """
    path = config_file(extra=extra, smtp=smtp_sink, mailbox_extra='poll_interval = "0.5s"')
    settings = load_settings(path)
    daemon = subprocess.Popen([sys.executable, "-m", "mailwatch.cli", "--config", str(path), "run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        dovecot.append(imap_user, customer_mail(1))
        arrivals = {}
        deadline = time.monotonic() + 15
        while len(arrivals) < 2 and time.monotonic() < deadline:
            for address in ("lead@acme.example", "manager@acme.example"):
                if address not in arrivals and smtp_sink.to(address):
                    arrivals[address] = datetime.now(UTC)
            time.sleep(0.02)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    with db_for(settings).session() as session:
        received_at = session.scalars(select(Message.received_at)).one()
    # INTERNALDATE has whole seconds: the true arrival is up to 1 s after received_at.
    assert timedelta(seconds=2) <= arrivals["lead@acme.example"] - received_at <= timedelta(seconds=4)
    assert timedelta(seconds=4) <= arrivals["manager@acme.example"] - received_at <= timedelta(seconds=6)
    assert len(smtp_sink.received) == 2


def test_a_reply_seen_in_inbox_and_sent_folder_counts_once(dovecot, imap_user, sla_service):
    # An agent's reply Cc'd to the shared mailbox and filed in Sent is one message of the thread.
    service, clock = sla_service('sent_folder = "Sent"')
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    reply = staff_reply("<q1.customer@example.com>", sender="Acme Support <support@acme.example>")
    dovecot.append(imap_user, reply, msg_time=T0 + timedelta(hours=1))
    dovecot.append(imap_user, reply, folder="Sent", msg_time=T0 + timedelta(hours=1))
    cycle_at(service, clock, timedelta(hours=2))
    thread = thread_of(service)
    assert (thread.message_count, thread.status, thread.answered_via) == (2, "answered", "own-address")


def test_changed_escalation_steps_move_open_threads_schedule(dovecot, imap_user, config_file, smtp_sink, db_for):
    # After a config change (restart or SIGHUP) open threads follow the new steps, not the old.
    clock = Clock(T0)
    old = load_settings(config_file(extra=SLA, smtp=smtp_sink))
    service = Service(old, db_for(old), clock=clock)
    service.prepare()
    dovecot.append(imap_user, customer_mail(1), msg_time=T0)
    cycle_at(service, clock, timedelta(minutes=1))
    assert thread_of(service).next_escalation_at == T0 + timedelta(hours=20)
    new = load_settings(config_file(extra=SLA.replace('after = "20h"', 'after = "2h"'), smtp=smtp_sink))
    restarted = Service(new, service.db, clock=clock)
    restarted.prepare()
    assert thread_of(restarted).next_escalation_at == T0 + timedelta(hours=2)
    cycle_at(restarted, clock, timedelta(hours=2, minutes=1))
    assert [m.recipients for m in smtp_sink.received] == [("lead@acme.example",)]


def test_schedule_realignment_logs_steps_as_durations(sla_service):
    # The log names the steps as the configuration writes them ("20h"), not as raw seconds.
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        sla_service()
    (event,) = [e for e in logs if e["event"] == "escalation_schedule_realigned"]
    assert event["steps"] == ["20h", "1d"]
