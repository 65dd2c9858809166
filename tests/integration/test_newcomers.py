"""Mail that arrives while a backlog is logged waits behind one batch, not the whole backlog."""

import asyncio
import threading

from sqlalchemy import func, select

from mailwatch.clock import system_clock
from mailwatch.db.models import FolderState, Message
from mailwatch.service import Service
from tests.mailfactory import customer_mail

BATCH = 5
BACKLOG = 4 * BATCH


def service_appending_a_newcomer(settings, db, dovecot, imap_user, after_batches: int,
                                 stop: threading.Event | None = None) -> Service:
    """A Service whose first sync APPENDs one new customer mail once `after_batches` batches are stored."""
    service = Service(settings, db, system_clock)
    service.folders.batch_size = BATCH
    original, stored = service.folders.store_batch, []

    def store_batch(ctx, batch, move_last_uid=True):
        logged = original(ctx, batch, move_last_uid)
        stored.append(move_last_uid)
        if stored.count(True) == after_batches and len(stored) == after_batches:
            dovecot.append(imap_user, customer_mail(BACKLOG))
        if stop is not None and any(fetched.uid == BACKLOG + 1 for fetched in batch):
            stop.set()  # as SIGTERM would, right after the newcomer was logged
        return logged

    service.folders.store_batch = store_batch
    return service


def logged_uids(db) -> list[int]:
    """UIDs in the order they were logged."""
    with db.session() as session:
        return list(session.scalars(select(Message.uid).order_by(Message.id)))


def last_uid(db) -> int:
    with db.session() as session:
        return session.scalars(select(FolderState.last_uid)).one()


def test_a_newcomer_is_logged_after_the_batch_in_progress_not_after_the_backlog(settings, db, dovecot, imap_user):
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(BACKLOG)])
    service = service_appending_a_newcomer(settings, db, dovecot, imap_user, after_batches=1)
    asyncio.run(service.run_once())
    order = logged_uids(db)
    newcomer = BACKLOG + 1
    assert sorted(order) == list(range(1, newcomer + 1))  # every UID once
    assert order.index(newcomer) == BATCH  # right after the first batch, ahead of the other three
    assert last_uid(db) == newcomer  # the finished backlog covers it


def test_stopped_after_a_newcomer_resumes_below_it_and_logs_it_once(settings, db, dovecot, imap_user):
    # last_uid stays where the backlog is: a newcomer never lets the mail below it be skipped.
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(BACKLOG)])
    stop = threading.Event()
    service = service_appending_a_newcomer(settings, db, dovecot, imap_user, after_batches=1, stop=stop)
    mailbox = settings.mailboxes[0]
    with service.imap_session(mailbox) as connection:
        report = service.sync_inbox(connection, mailbox, stop)
    assert report.logged == 2 * BATCH + 1  # the batch before the newcomer, the newcomer, one more batch
    assert last_uid(db) == 2 * BATCH
    asyncio.run(Service(settings, db, system_clock).run_once())  # the restart
    order = logged_uids(db)
    assert sorted(order) == list(range(1, BACKLOG + 2))  # nothing skipped, the newcomer once
    assert last_uid(db) == BACKLOG + 1
