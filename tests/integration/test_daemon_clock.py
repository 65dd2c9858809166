"""The daemon in this process on a clock the test moves: alerts, recovery, /healthz, sweeps.

Real Dovecot, real SQLite, a real SMTP sink and the real metrics HTTP server; only the
time is the test's. The clock starts a day ahead of the real time: APScheduler fires
jobs by the real time and the daemon schedules their first runs from its clock, so no
job runs by itself during a test. The test runs the jobs (`housekeeping(now)`,
`sweep(now)`) and moves the clock instead of sleeping.
"""

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.utils import floatToGoString
from sqlalchemy import select
from structlog.testing import capture_logs

from mailwatch.config import load_settings
from mailwatch.daemon import Daemon
from mailwatch.daemon.notify import Notifier
from mailwatch.db.models import Message, OutboxMail
from mailwatch.testing.devservers import free_port
from mailwatch.errors import AuthenticationError
from mailwatch.pipeline.sync import FolderReport
from tests.mailfactory import customer_mail

# Timing rules do not depend on the database: SQLite is enough here.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
OPS = "ops@acme.example"
ALERTS_TO_OPS = f'[[escalation]]\nafter = "1h"\nto = ["{OPS}"]\n'
ACK_FAST = 'max_age = "2d"'


class FakeClock:
    """A clock that moves only when the test moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC) + timedelta(days=1))


@asynccontextmanager
async def running(path: Path, clock: FakeClock) -> AsyncIterator[Daemon]:
    """A started daemon on `clock` (no systemd, no signals), shut down afterwards."""
    daemon = Daemon(path, load_settings(path), clock, Notifier({}))
    await daemon.startup()
    try:
        yield daemon
    finally:
        await daemon.shutdown()


async def until(condition: Callable[[], bool], timeout_s: float = 15) -> None:
    """Wait for something the daemon's threads do (an IMAP login, an SMTP delivery)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError:
        return 0, ""  # not listening yet


@SQLITE_ONLY
def test_unreadable_mailbox_alerts_once_after_alert_after_and_recovers_once(
        config_file, smtp_sink, clock, tmp_path):
    # A mailbox failing for alert_after (15 min by default) gets one alert: not a second
    # earlier, not twice; the first good sync afterwards gets one recovery note, later ones none.
    path = config_file(smtp=smtp_sink, extra=ALERTS_TO_OPS)
    (tmp_path / "imap-password").write_text("Hunter2-not-it\n")
    started = clock()

    async def scenario() -> None:
        with capture_logs() as logs:
            async with running(path, clock) as daemon:
                mailbox = daemon.settings.mailbox("support")
                await until(lambda: daemon.health.is_failing("mailbox support"))
                await failing_for_alert_after(daemon, mailbox)
                await until(lambda: len(smtp_sink.to(OPS)) == 1)
                alerts = [event for event in logs if event["event"] == "mailwatch_alert"]
                (tmp_path / "imap-password").write_text("secret\n")
                clock.advance(minutes=5)
                await daemon.reloader.reload()
                await until(lambda: len(smtp_sink.to(OPS)) == 2)
                assert daemon.mailbox_synced(mailbox, FolderReport("support", "INBOX"), clock.advance(seconds=1)) is None
        assert len(alerts) == 1 and alerts[0]["since"] == started.isoformat()
        assert [e for e in logs if e["event"] == "imap_login_refused"]
        assert "Hunter2-not-it" not in repr(logs)

    async def failing_for_alert_after(daemon: Daemon, mailbox) -> None:
        clock.advance(minutes=15, seconds=-1)
        assert await daemon.jobs.housekeeping(clock()) == []
        assert daemon.mailbox_failed(mailbox, AuthenticationError("login refused"), clock()) is None
        await daemon.service.drain_outbox()
        assert smtp_sink.to(OPS) == []
        (alert,) = await daemon.jobs.housekeeping(clock.advance(seconds=1))
        assert (alert.kind, alert.incident.component, alert.incident.since) == ("alert", "mailbox support", started)
        assert await daemon.jobs.housekeeping(clock.advance(hours=1)) == []
        assert daemon.mailbox_failed(mailbox, AuthenticationError("login refused"), clock()) is None

    asyncio.run(scenario())
    alert, recovery = smtp_sink.to(OPS)
    assert "ALERT" in alert.message["Subject"] and "mailbox support" in alert.message["Subject"]
    assert "RECOVERED" in recovery.message["Subject"]
    assert "Hunter2-not-it" not in alert.content.decode()


@SQLITE_ONLY
def test_reloaded_alert_after_applies_to_an_incident_already_open(config_file, smtp_sink, clock):
    # SIGHUP with a longer alert_after: the open incident keeps its start and alerts by the new one.
    path = config_file(smtp=smtp_sink, extra=ALERTS_TO_OPS, imap_port=free_port())  # nobody listens there
    started = clock()

    async def scenario() -> None:
        async with running(path, clock) as daemon:
            await until(lambda: daemon.health.is_failing("mailbox support"))
            path.write_text(path.read_text().replace('staff = ["@acme.example"]',
                                                     'staff = ["@acme.example"]\nalert_after = "1h"'))
            await daemon.reloader.reload()
            assert await daemon.jobs.housekeeping(started + timedelta(minutes=59)) == []
            (alert,) = await daemon.jobs.housekeeping(started + timedelta(hours=1))
            assert alert.incident.since == started

    asyncio.run(scenario())


@SQLITE_ONLY
def test_unsendable_outbox_alerts_after_alert_after_and_recovers_when_mail_goes_out(
        dovecot, imap_user, config_file, smtp_sink, clock):
    # SMTP refusing for alert_after is an outbox incident: its alert waits in the queue with
    # the ack, and once the server is back both go out, followed by one recovery note.
    path = config_file(ack=True, smtp=smtp_sink, ack_extra=ACK_FAST, extra=ALERTS_TO_OPS)
    dovecot.append(imap_user, customer_mail(1))
    smtp_sink.stop()

    async def scenario() -> None:
        async with running(path, clock) as daemon:
            await until(lambda: daemon.health.is_failing("outbox"))
            assert await daemon.jobs.housekeeping(clock.advance(minutes=14)) == []
            (alert,) = await daemon.jobs.housekeeping(clock.advance(minutes=1))
            assert alert.incident.component == "outbox"
            await until(lambda: alert_attempts(daemon) == 1)  # tried and deferred while the server is away
            smtp_sink.start()
            clock.advance(minutes=1)  # past every retry delay
            daemon.jobs.wake_outbox()
            await until(lambda: len(smtp_sink.received) == 3)
            assert not daemon.health.failing()

    asyncio.run(scenario())
    assert len(smtp_sink.to("customer1@example.com")) == 1
    alert, recovery = sorted(smtp_sink.to(OPS), key=lambda mail: "RECOVERED" in mail.message["Subject"])
    assert "ALERT" in alert.message["Subject"] and "outbox" in alert.message["Subject"]
    assert "RECOVERED" in recovery.message["Subject"]


def alert_attempts(daemon: Daemon) -> int:
    with daemon.db.session() as session:
        return session.scalar(select(OutboxMail.attempts).where(OutboxMail.kind == "alert")) or 0


@SQLITE_ONLY
def test_metrics_and_healthz_report_a_known_workload(dovecot, imap_user, config_file, smtp_sink, clock):
    # After 3 customers and a bounce the counters and gauges say exactly that; /healthz
    # fails once the mailbox has not synced for more than 3 poll intervals.
    port = free_port()
    path = config_file(ack=True, smtp=smtp_sink, ack_extra=ACK_FAST, mailbox_extra='poll_interval = "60s"',
                       extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    bounce = customer_mail(9).replace(b"From: Customer 9 <customer9@example.com>",
                                      b"From: MAILER-DAEMON@mx.example.org\nReturn-Path: <>")
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(3)] + [bounce])

    async def get(path: str) -> tuple[int, str]:
        return await asyncio.to_thread(http_get, port, path)

    async def scenario() -> None:
        async with running(path, clock) as daemon:
            await until(lambda: daemon.stats["sent"] == 3)  # counted once the drain round is over
            status, metrics = await get("/metrics")
            assert 'mailwatch_emails_sent_total{kind="ack"} 3.0' in metrics
            assert 'mailwatch_messages_logged_total{category="customer",mailbox="support"} 3.0' in metrics
            assert 'mailwatch_messages_logged_total{category="bounce",mailbox="support"} 1.0' in metrics
            assert 'mailwatch_acks_suppressed_total{reason="not-customer"} 1.0' in metrics
            assert "mailwatch_open_threads 3.0" in metrics and "mailwatch_outbox_depth 0.0" in metrics
            assert f'mailwatch_last_sync_timestamp_seconds{{mailbox="support"}} {floatToGoString(clock().timestamp())}' in metrics
            synced_at = clock()
            clock.advance(minutes=3)  # exactly 3 poll intervals: still healthy
            assert (await get("/healthz"))[0] == 200
            clock.advance(seconds=1)
            status, body = await get("/healthz")
            assert status == 503 and f"mailbox support not synced since {synced_at.isoformat()}" in body

    asyncio.run(scenario())


@SQLITE_ONLY
def test_sweep_job_escalates_at_the_time_it_is_given_and_only_once(dovecot, imap_user, config_file, smtp_sink, clock):
    # A step is due `after` past the customer's arrival: the sweep at that instant sends it,
    # one a second earlier does not, and a later sweep does not send it again.
    path = config_file(smtp=smtp_sink, ack_extra=ACK_FAST,
                       extra='[[escalation]]\nafter = "20h"\nto = ["lead@acme.example"]\n')
    dovecot.append(imap_user, customer_mail(1))

    async def scenario() -> None:
        async with running(path, clock) as daemon:
            await until(lambda: daemon.stats["logged"] == 1)
            with daemon.db.session() as session:
                arrived = session.scalars(select(Message.received_at)).one()
            assert (await daemon.jobs.sweep(arrived + timedelta(hours=20, seconds=-1))).escalated == []
            report = await daemon.jobs.sweep(arrived + timedelta(hours=20))
            assert [item.step for item in report.escalated] == [1]
            assert (await daemon.jobs.sweep(arrived + timedelta(hours=30))).escalated == []
            await until(lambda: len(smtp_sink.to("lead@acme.example")) == 1)
            assert daemon.stats["escalated"] == 1

    asyncio.run(scenario())
