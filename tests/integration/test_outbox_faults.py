"""The outbox under faults: a failed write after a send, a kill inside and outside the SMTP window, leases."""

import asyncio
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from mailwatch.clock import system_clock
from mailwatch.config import load_settings
from mailwatch.db.models import OutboxMail
from mailwatch.pipeline.outbox import Outbox
from mailwatch.service import Service
from tests.faults import FailingCommits
from tests.mailfactory import customer_mail

# The UPDATE that records an attempt's outcome (a mark sets only sending_since).
RECORD_STATEMENT = r"UPDATE outbox SET .*status="
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def outbox_rows(db) -> list[OutboxMail]:
    with db.session() as session:
        return list(session.scalars(select(OutboxMail).order_by(OutboxMail.id)))


def queue_acks(dovecot, imap_user, settings, db, count: int) -> Service:
    service = Service(settings, db, system_clock)
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(count)])
    for mailbox in settings.mailboxes:
        service.sync_mailbox(mailbox)
    assert len(outbox_rows(db)) == count
    return service


def test_failed_write_after_a_send_neither_repeats_it_nor_strands_the_round(
        dovecot, imap_user, config_file, smtp_sink, db_for):
    # The server accepted the mail, then recording it failed: it is recorded later, never sent
    # again, and the round's untried claims go out on the next drain, not after the lease.
    settings = load_settings(config_file(ack=True, smtp=smtp_sink))
    db = db_for(settings)
    service = queue_acks(dovecot, imap_user, settings, db, 9)
    fault = FailingCommits(db.engine, RECORD_STATEMENT, times=1)
    first = asyncio.run(service.drain_outbox())
    assert fault.failed == 1 and first.database_error and "full" in first.database_error
    owed = [row for row in outbox_rows(db) if row.claimed_until is not None]
    # Only the mails whose outcomes the failed commit carried: at most one per connection, as the
    # connections' writes share transactions and each waits for its own before sending on.
    assert 1 <= len(owed) == len(service.outbox.unrecorded) <= service.outbox.connections
    with capture_logs() as logs:
        second = asyncio.run(service.drain_outbox())  # same clock: no lease has expired
    recipients = [mail.recipients[0] for mail in smtp_sink.wait_for(9)]
    assert sorted(recipients) == sorted(set(recipients)) and len(recipients) == 9
    assert first.sent + second.sent == 9
    assert {row.status for row in outbox_rows(db)} == {"sent"}
    assert sum(1 for e in logs if e["event"] == "mail_sent") == second.sent


@SQLITE_ONLY
def test_kill_inside_the_smtp_window_repeats_only_those_mails_with_the_same_message_id(
        dovecot, imap_user, config_file, smtp_sink, db_for):
    # Killed while three mails sit in DATA and a fourth is claimed but not handed over: the
    # restart sends the fourth once, and only the three that reached the server go again,
    # each under the Message-ID it had.
    path = config_file(ack=True, smtp=smtp_sink)
    db = db_for(load_settings(path))
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(4)])
    smtp_sink.handler.data_delay_s = 30
    poll = subprocess.Popen([sys.executable, "-m", "mailwatch.cli", "--config", str(path), "poll"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    smtp_sink.wait_for(3, timeout_s=30)
    time.sleep(0.2)  # the fourth would have been handed over by now, were it not queued behind the first
    poll.kill()
    poll.wait()
    smtp_sink.handler.data_delay_s = 0
    in_window = {row.message_id for row in outbox_rows(db) if row.sending_since is not None}
    assert len(smtp_sink.received) == 3 and len(in_window) == 3
    again = subprocess.run([sys.executable, "-m", "mailwatch.cli", "--config", str(path),
                            "poll"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    received = smtp_sink.wait_for(7)
    time.sleep(0.5)
    ids = Counter(mail.message["Message-ID"] for mail in smtp_sink.received)
    assert len(received) == 7 and {mid for mid, n in ids.items() if n == 2} == in_window
    assert sorted(ids.values()) == [1, 2, 2, 2]
    assert again.stderr.count("mail_resent_after_interrupted_send") == 3
    assert {row.status for row in outbox_rows(db)} == {"sent"}


def test_a_live_sender_renews_its_lease_so_nobody_takes_its_mail_over(
        dovecot, imap_user, config_file, smtp_sink, db_for):
    # A round that outlasts the lease keeps it: a second instance draining meanwhile sends nothing.
    settings = load_settings(config_file(ack=True, smtp=smtp_sink))
    db = db_for(settings)
    service = queue_acks(dovecot, imap_user, settings, db, 3)
    policy = replace(service.outbox.policy, lease=timedelta(seconds=0.6))
    slow = Outbox(db, service.smtp_sender, system_clock, policy, connections=1)
    other = Outbox(db_for(settings), service.smtp_sender, system_clock, policy, connections=1)
    smtp_sink.handler.mail_delay_s = 0.5

    async def race():
        first = asyncio.create_task(slow.drain())
        await asyncio.sleep(1.0)  # past the lease as it was claimed
        second = await other.drain()
        return await first, second

    first, second = asyncio.run(race())
    assert (first.sent, second.sent) == (3, 0)
    recipients = [mail.recipients[0] for mail in smtp_sink.wait_for(3)]
    time.sleep(0.3)
    assert len(smtp_sink.received) == 3 and len(set(recipients)) == 3
