"""A fetched batch is written in short transactions, so another mailbox's new mail never waits behind it.

SQLite has one writer: while mailbox A's batch transaction is open, mailbox B's new mail
cannot be logged. The isolation benchmark (bench/isolation.py) measured B waiting up to
5.5 s behind A's 250-message transactions; this checks the rule that bounds it.
"""

from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import func, select

from mailwatch.clock import system_clock
from mailwatch.db.models import FolderState, Message
from mailwatch.imap import FetchedMessage
from mailwatch.pipeline.sync import STORE_CHUNK, folder_state
from mailwatch.service import Service


def fetched(uid: int) -> FetchedMessage:
    header = (f"From: Customer {uid} <c{uid}@example.org>\r\nTo: support@acme.example\r\nSubject: question {uid}\r\n"
              f"Message-ID: <q{uid}@example.org>\r\nDate: Wed, 02 Dec 2026 09:00:00 +0000").encode()
    body = b"Where is my parcel?\r\n"
    return FetchedMessage(uid, datetime.now(UTC), (), len(header) + len(body), header, body)


def committed_counts(db) -> list[int]:
    """Messages in the database after each transaction the sync commits, recorded from now on."""
    counts: list[int] = []
    original = db.session

    @contextmanager
    def recording():
        with original() as session:
            yield session
        with original() as reader:
            counts.append(reader.scalar(select(func.count()).select_from(Message)))

    db.session = recording
    return counts


def test_a_big_batch_is_committed_in_transactions_of_at_most_store_chunk_messages(settings, db):
    service = Service(settings, db, system_clock)
    ctx = replace(service.folder_context(settings.mailboxes[0], "INBOX"), uidvalidity=7)
    with db.session() as session:
        folder_state(session, "support", "INBOX").uidvalidity = 7  # as a SELECT would have set it
    total = 3 * STORE_CHUNK + 1
    counts = committed_counts(db)
    logged = service.folders.store_batch(ctx, [fetched(uid) for uid in range(1, total + 1)])
    assert [entry.uid for entry in logged] == list(range(1, total + 1))
    steps = [after - before for before, after in zip([0, *counts], counts, strict=False)]
    assert counts[-1] == total
    assert max(steps) <= STORE_CHUNK, steps  # no transaction held the write lock for more
    with db.session() as session:
        assert session.scalars(select(FolderState.last_uid)).one() == total  # each chunk moved it
