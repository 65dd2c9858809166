"""The weekly report email: once per week through the outbox and real SMTP, across restarts and downtime."""

import asyncio
import email
import time
from datetime import UTC, datetime
from email.policy import default
from zoneinfo import ZoneInfo

import pytest

from mailwatch.config import load_settings
from mailwatch.db.engine import Database
from mailwatch.service import Service
from tests.integration.test_daemon import daemon, wait_until  # noqa: F401 - `daemon` is a fixture

BERLIN = ZoneInfo("Europe/Berlin")
REPORT = """
[report]
to = ["leads@acme.example", "boss@acme.example"]
every = "monday 08:00"
"""


class Clock:
    """A clock the test moves: the service reads `now` from it, nothing sleeps."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def start(config_file, smtp_sink):
    """A factory for a freshly started service on the same database: a restart each call."""
    settings = load_settings(config_file(smtp=smtp_sink, extra=REPORT))
    made = []

    def make(clock: Clock) -> Service:
        db = Database(settings.service.database)
        made.append(db)
        service = Service(settings, db, clock)
        service.prepare()
        return service

    yield make
    for db in made:
        db.dispose()


def queue_and_send(service: Service) -> int:
    weeks = service.queue_weekly_report()
    asyncio.run(service.drain_outbox())
    return weeks


def test_the_weekly_report_goes_out_once_per_week_across_restarts_and_downtime(start, smtp_sink):
    # Two leads get each week once: a restart sends nothing again, three weeks down send three weeks.
    clock = Clock(datetime(2026, 11, 2, 8, 1, tzinfo=BERLIN).astimezone(UTC))
    assert queue_and_send(start(clock)) == 1
    assert len(smtp_sink.wait_for(2)) == 2
    assert queue_and_send(start(clock)) == 0  # restarted within the same week
    clock.now = datetime(2026, 11, 6, 12, 0, tzinfo=BERLIN).astimezone(UTC)
    assert queue_and_send(start(clock)) == 0
    clock.now = datetime(2026, 11, 25, 10, 0, tzinfo=BERLIN).astimezone(UTC)  # down since the 6th
    assert queue_and_send(start(clock)) == 3
    received = smtp_sink.wait_for(8)
    assert len(received) == 8 and sorted({mail.recipients for mail in received}) == [
        ("boss@acme.example",), ("leads@acme.example",)]
    subjects = {email.message_from_bytes(mail.content, policy=default)["Subject"] for mail in received}
    assert subjects == {f"Acme Support: weekly report {week}" for week in (
        "26 Oct – 2 Nov 2026", "2 Nov – 9 Nov 2026", "9 Nov – 16 Nov 2026", "16 Nov – 23 Nov 2026")}


def test_the_weekly_email_has_the_text_report_and_the_html_page(start, smtp_sink):
    # The plain part is the text report, the HTML part the self-contained page.
    queue_and_send(start(Clock(datetime(2026, 11, 2, 9, 0, tzinfo=BERLIN).astimezone(UTC))))
    message = email.message_from_bytes(smtp_sink.wait_for(1)[0].content, policy=default)
    assert message["Auto-Submitted"] == "auto-generated"
    assert "Staffing:" in message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert html.startswith("<!doctype html>") and html.count("<svg") == 5


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_daemon_sends_the_due_week_once_across_a_restart(config_file, smtp_sink, daemon):
    # `mailwatch run` queues the week that ended last Monday on start; restarted, it sends nothing again.
    path = config_file(smtp=smtp_sink, extra=REPORT)
    first = daemon(path)
    first.wait_for_event("weekly_report_queued")
    assert wait_until(lambda: len(smtp_sink.received) == 2)
    assert first.stop()[0] == 0
    second = daemon(path)
    second.wait_for_event("daemon_started")
    time.sleep(3)  # the job runs at once on start; give it time to (not) queue
    assert second.events("weekly_report_queued") == [] and len(smtp_sink.received) == 2
    assert second.stop()[0] == 0
