"""Every event in the log happened: events are written after the commit they describe.

Each test makes one commit fail the way a full SQLite disk does, then counts the
events against the rows that were really committed.
"""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from mailwatch.config import load_settings
from mailwatch.db.models import Escalation, Message, OutboxMail
from mailwatch.errors import TransientError
from mailwatch.service import Service
from tests.faults import FailingCommits
from tests.integration.test_escalations import SLA, T0, Clock
from tests.mailfactory import customer_mail


def count(db, model) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def events(logs: list[dict], name: str) -> int:
    return sum(1 for entry in logs if entry["event"] == name)


def test_message_logged_only_for_committed_messages(dovecot, imap_user, settings, db):
    # A batch whose commit fails logs no message_logged; its retry logs each message once.
    service = Service(settings, db, Clock(T0))
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(3)])
    fault = FailingCommits(db.engine, r"INSERT INTO messages", times=1)
    with capture_logs() as logs:
        with pytest.raises(TransientError):
            service.sync_mailbox(settings.mailboxes[0])
        assert fault.failed == 1 and events(logs, "message_logged") == count(db, Message) == 0
        service.sync_mailbox(settings.mailboxes[0])
    assert events(logs, "message_logged") == count(db, Message) == 3


def test_thread_escalated_only_for_committed_steps(dovecot, imap_user, config_file, smtp_sink, db_for):
    # A sweep whose commit fails says nothing escalated; the next sweep says it once per step.
    settings = load_settings(config_file(extra=SLA, smtp=smtp_sink))
    clock = Clock(T0)
    service = Service(settings, db_for(settings), clock)
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(2)], msg_time=T0)
    service.sync_mailbox(settings.mailboxes[0])
    clock.now = T0 + timedelta(hours=24)  # both steps due for both threads
    fault = FailingCommits(service.db.engine, r"INSERT INTO escalations", times=1)
    with capture_logs() as logs:
        with pytest.raises(Exception, match="full"):
            service.sweep()
        assert fault.failed == 1 and events(logs, "thread_escalated") == count(service.db, Escalation) == 0
        assert events(logs, "escalation_queued") == count(service.db, OutboxMail) == 0
        service.sweep()
        service.sweep()
    assert events(logs, "thread_escalated") == count(service.db, Escalation) == 4
    assert events(logs, "escalation_queued") == count(service.db, OutboxMail) == 2


def test_mail_sent_only_for_committed_sends(dovecot, imap_user, config_file, smtp_sink, db_for):
    # The send whose recording fails is announced once, when its outcome is finally stored.
    settings = load_settings(config_file(ack=True, smtp=smtp_sink))
    db = db_for(settings)
    service = Service(settings, db, Clock(T0))
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(4)], msg_time=T0)
    service.sync_mailbox(settings.mailboxes[0])
    fault = FailingCommits(db.engine, r"UPDATE outbox SET .*status=", times=1)
    with capture_logs() as logs:
        asyncio.run(service.drain_outbox())
        sent = lambda: count_sent(db)  # noqa: E731 - read twice below
        assert fault.failed == 1 and events(logs, "mail_sent") == sent() < 4
        asyncio.run(service.drain_outbox())
    assert events(logs, "mail_sent") == sent() == len(smtp_sink.wait_for(4)) == 4


def count_sent(db) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(OutboxMail).where(OutboxMail.status == "sent"))
