"""The drain's SMTP connections kept from round to round, and its lease-checked round writes.

Real parts throughout: an aiosmtpd sink on loopback (it counts the sessions it greets
and can drop them, as a server's idle timeout does), and SQLite or PostgreSQL.
"""

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from mailwatch.db.engine import Database
from mailwatch.db.models import OutboxMail
from mailwatch.pipeline.outbox import PENDING, SENT, Outbox, enqueue
from mailwatch.smtp import SmtpEndpoint, SmtpSender
from mailwatch.testing.devservers import SmtpSink
from tests.integration.test_daemon import ACK_FAST, daemon, wait_until  # noqa: F401 - daemon is a fixture
from tests.mailfactory import customer_mail


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def outbox_db(database_url) -> Iterator[Database]:
    database = Database(database_url)
    database.ensure_schema()
    yield database
    database.dispose()


def sender_for(sink: SmtpSink, idle_close_s: float = 30.0):
    """The factory an Outbox makes its SMTP sessions with."""
    return lambda: SmtpSender(SmtpEndpoint(sink.host, sink.port, "none"), idle_close_s=idle_close_s)


def queue(db: Database, *numbers: int) -> None:
    with db.session() as session:
        for n in numbers:
            message = EmailMessage()
            message["From"], message["To"] = "support@acme.example", f"c{n}@example.com"
            message["Subject"], message["Message-ID"] = f"Re: help {n}", f"<mailwatch.{n}@acme.example>"
            message.set_content("We got your mail.")
            enqueue(session, kind="ack", dedupe_key=f"ack:{n}", message=message, recipient=f"c{n}@example.com",
                    envelope_from="support@acme.example", now=now())


def rows(db: Database) -> list[OutboxMail]:
    with db.session() as session:
        return list(session.scalars(select(OutboxMail).order_by(OutboxMail.id)))


def wait_until_closed(sink: SmtpSink, timeout_s: float = 5.0) -> bool:
    """Whether every session the sink greeted has been closed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(transport.is_closing() for transport in sink.handler.open_sessions):
            return True
        time.sleep(0.02)
    return False


def test_one_smtp_connection_serves_several_drains_while_they_are_kept(outbox_db, smtp_sink):
    # The daemon's sender task keeps its connections: three drains of one mail each, one SMTP
    # session; it is closed when the block that kept it ends.
    outbox = Outbox(outbox_db, sender_for(smtp_sink), now)

    async def scenario() -> list[int]:
        sent = []
        async with outbox.kept_connections():
            for n in range(3):
                queue(outbox_db, n)
                sent.append((await outbox.drain()).sent)
        return sent

    assert asyncio.run(scenario()) == [1, 1, 1]
    assert len(smtp_sink.received) == 3 and smtp_sink.handler.connections == 1
    assert wait_until_closed(smtp_sink)


def test_a_drain_not_kept_opens_its_own_connections_and_closes_them(outbox_db, smtp_sink):
    # `mailwatch poll` drains once: its connection lasts the drain, not the process.
    outbox = Outbox(outbox_db, sender_for(smtp_sink), now)
    for n in range(2):
        queue(outbox_db, n)
        assert asyncio.run(outbox.drain()).sent == 1
    assert smtp_sink.handler.connections == 2 and wait_until_closed(smtp_sink)


def test_a_connection_the_server_dropped_between_drains_is_reopened_and_the_mail_sent_once(outbox_db, smtp_sink):
    # The server closed the idle session: the next drain connects again, and nothing is deferred.
    outbox = Outbox(outbox_db, sender_for(smtp_sink), now)

    async def scenario() -> list[tuple[int, int]]:
        reports = []
        async with outbox.kept_connections():
            for n in range(2):
                queue(outbox_db, n)
                report = await outbox.drain()
                reports.append((report.sent, report.deferred))
                smtp_sink.drop_connections()
        return reports

    assert asyncio.run(scenario()) == [(1, 0), (1, 0)]
    assert sorted(mail.recipients[0] for mail in smtp_sink.received) == ["c0@example.com", "c1@example.com"]
    assert smtp_sink.handler.connections == 2
    assert {row.status for row in rows(outbox_db)} == {SENT}


def test_a_send_that_finds_the_kept_connection_closed_retries_once_on_a_fresh_one(smtp_sink):
    # The server closes the session just as a send begins (our side has not read its close yet):
    # MAIL FROM fails before anything of the mail was handed over, so it goes once, on a new session.
    content = b"From: support@acme.example\r\nTo: pat@example.com\r\nSubject: Re: help\r\n\r\nGot it.\r\n"
    sender = sender_for(smtp_sink)()

    async def scenario() -> list[dict]:
        await sender.send("support@acme.example", "pat@example.com", content)
        smtp_sink.drop_connections()
        time.sleep(0.2)  # blocks the loop: the close has reached our socket, unread
        with capture_logs() as logs:
            await sender.send("support@acme.example", "pat@example.com", content)
        await sender.close()
        return logs

    logs = asyncio.run(scenario())
    assert [e["event"] for e in logs] == ["smtp_reconnecting"]
    assert len(smtp_sink.received) == 2 and smtp_sink.handler.connections == 2


def test_a_kept_connection_is_closed_after_its_idle_time(smtp_sink):
    # A connection nobody sends over is not held open against the server: QUIT after idle_close_s.
    sender = sender_for(smtp_sink, idle_close_s=0.2)()

    async def scenario() -> tuple[bool, bool]:
        await sender.send("support@acme.example", "pat@example.com", b"Subject: x\r\n\r\nx\r\n")
        await asyncio.sleep(0.05)
        open_before = not any(transport.is_closing() for transport in smtp_sink.handler.open_sessions)
        await asyncio.sleep(0.5)
        return open_before, all(transport.is_closing() for transport in smtp_sink.handler.open_sessions)

    assert asyncio.run(scenario()) == (True, True)


def test_a_lost_lease_is_not_overwritten_by_the_rounds_update(outbox_db, database_url, smtp_sink):
    # While our first mail sits in DATA, another instance takes both our rows over (its clock says
    # our lease ran out): our outcome for the first is not written, and the second is never sent.
    outbox = Outbox(outbox_db, sender_for(smtp_sink), now, connections=1)
    other_db = Database(database_url)
    other = Outbox(other_db, sender_for(smtp_sink), lambda: now() + timedelta(hours=1))
    queue(outbox_db, 1, 2)
    smtp_sink.handler.data_delay_s = 1.5  # room for the other's claim on a busy machine

    async def scenario():
        drain = asyncio.create_task(outbox.drain())
        while not smtp_sink.received:
            await asyncio.sleep(0.01)
        taken = await asyncio.to_thread(other.claim, 10)
        return await drain, taken

    with capture_logs() as logs:
        report, taken = asyncio.run(scenario())
    other_db.dispose()
    assert len(taken) == 2 and (report.sent, report.deferred) == (0, 0)
    theirs = (PENDING, None, taken[0].token)
    assert [(row.status, row.sent_at, row.claim_token) for row in rows(outbox_db)] == [theirs] * 2
    assert len(smtp_sink.received) == 1
    events = [e["event"] for e in logs]
    assert events.count("outbox_lease_lost") == 1 and events.count("mail_resent_after_interrupted_send") == 1


# One drain in a process of its own, to be killed: `python -c DRAIN <database url> <sink port>`.
DRAIN = """
import asyncio, sys
from datetime import UTC, datetime
from mailwatch.db.engine import Database
from mailwatch.pipeline.outbox import Outbox
from mailwatch.smtp import SmtpEndpoint, SmtpSender
db = Database(sys.argv[1])
outbox = Outbox(db, lambda: SmtpSender(SmtpEndpoint("127.0.0.1", int(sys.argv[2]), "none")),
                lambda: datetime.now(UTC), connections=1)
asyncio.run(outbox.drain())
"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_kill_9_mid_round_repeats_only_the_mail_in_flight(outbox_db, database_url, smtp_sink):
    # Killed while the second of three mails sits in DATA: the first, answered before, is recorded
    # sent (its outcome was written before the second was handed over) and never goes again.
    queue(outbox_db, 1, 2, 3)
    smtp_sink.handler.data_delay_s = 1.0
    process = subprocess.Popen([sys.executable, "-c", DRAIN, database_url, str(smtp_sink.port)])
    try:
        assert len(smtp_sink.wait_for(2, timeout_s=20)) == 2
    finally:
        process.kill()
        process.wait()
    smtp_sink.handler.data_delay_s = 0
    assert [(row.status, row.sending_since is not None) for row in rows(outbox_db)] == [
        (SENT, False), (PENDING, True), (PENDING, False)]
    outbox = Outbox(outbox_db, sender_for(smtp_sink), lambda: now() + timedelta(minutes=5))  # past the lease
    assert asyncio.run(outbox.drain()).sent == 2
    assert Counter(mail.recipients[0] for mail in smtp_sink.received) == {
        "c1@example.com": 1, "c2@example.com": 2, "c3@example.com": 1}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_daemon_acks_over_one_kept_connection_and_closes_it_on_shutdown(
        dovecot, imap_user, config_file, smtp_sink, daemon):
    # `mailwatch run`: two customers a moment apart, two drains, one SMTP session, closed by the
    # sender task that owns it when the daemon stops.
    running = daemon(config_file(ack=True, smtp=smtp_sink, ack_extra=ACK_FAST))
    running.wait_for_event("mailbox_watching")
    for n in range(2):
        dovecot.append(imap_user, customer_mail(n))
        assert wait_until(lambda: len(smtp_sink.received) == n + 1, timeout_s=10)  # noqa: B023 - used at once
    assert smtp_sink.handler.connections == 1 and not wait_until_closed(smtp_sink, timeout_s=0.2)
    assert running.stop()[0] == 0
    assert wait_until_closed(smtp_sink)
