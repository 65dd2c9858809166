"""Bringing one IMAP folder's log up to date: new messages, UIDVALIDITY, flags.

Each fetched batch is recorded in transactions of at most `STORE_CHUNK` messages,
each together with the folder's last UID, so a process killed mid-backlog resumes
exactly where its last commit ended. Mail that arrives while a big backlog is being
logged is taken between the backlog's batches (see `FolderSync.log_new`). The chunks
are short because SQLite has one writer: another mailbox's new mail waits for the
transaction in progress, and with whole 250-message batches that was seconds. A chunk that fails is retried one message
at a time, and a message that still fails is quarantined: it never blocks the rest.
"""

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mailwatch.db.engine import Database
from mailwatch.db.models import FolderState, Message, Thread
from mailwatch.errors import TransientError
from mailwatch.imap import FETCH_BATCH_SIZE, FetchedMessage, FolderStatus, ImapConnection
from mailwatch.mail.rules import Category
from mailwatch.pipeline.ingest import (
    FolderContext,
    Logged,
    log_logged,
    record_batch,
    record_flags,
    record_message,
    record_unparsable,
)
from mailwatch.pipeline.readahead import ReadAhead
from mailwatch.sla import ThreadStatus

log = structlog.get_logger(__name__)

# Messages per write transaction: SQLite's one write lock is held this long, so another
# mailbox's new mail waits behind at most this many, not a whole FETCH batch of 250
# (bench isolation: p99 5.5 s -> 1.9 s); the extra commits cost no measurable ingest CPU
# in WAL mode with synchronous=NORMAL.
STORE_CHUNK = 25


@dataclass
class FolderReport:
    mailbox: str
    folder: str
    logged: int = 0
    duplicates: int = 0
    answered_by_flag: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    ack_outcomes: Counter[str] = field(default_factory=Counter)

    def count(self, logged: Logged) -> None:
        if logged.duplicate:
            self.duplicates += 1
            return
        self.logged += 1
        self.categories[logged.category] += 1
        if logged.ack_outcome:
            self.ack_outcomes[logged.ack_outcome] += 1


@contextmanager
def _database_unavailable_is_transient() -> Iterator[None]:
    """A locked or unreachable database is no fault of the message: retry it later."""
    try:
        yield
    except OperationalError as exc:
        raise TransientError(f"database unavailable: {exc.__class__.__name__}: {str(exc.orig)[:200]}") from exc


def folder_state(session: Session, mailbox: str, folder: str) -> FolderState:
    """The folder's sync state row, created on first use."""
    query = select(FolderState).where(FolderState.mailbox == mailbox, FolderState.folder == folder)
    state = session.scalar(query)
    if state is None:
        # Two instances starting on an empty database both get here: the second insert does nothing.
        dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
        session.execute(dialect.insert(FolderState).values(mailbox=mailbox, folder=folder, last_uid=0)
                        .on_conflict_do_nothing(index_elements=["mailbox", "folder"]))
        state = session.scalar(query)
    return state


class FolderSync:
    """Syncs folders into the database through one open IMAP connection."""

    def __init__(self, db: Database, clock: Callable[[], datetime], batch_size: int = FETCH_BATCH_SIZE,
                 on_commit: Callable[[list[Logged]], None] | None = None) -> None:
        self.db = db
        self.clock = clock
        self.batch_size = batch_size  # messages per FETCH, and at most this many newcomers at a time
        # Told of every committed chunk (from the sync's thread): the daemon's sender starts
        # on a newcomer's acknowledgment at once, not when a long backlog's sync has ended.
        self.on_commit = on_commit or (lambda logged: None)

    def run(self, connection: ImapConnection, folder: FolderContext, check_flags: bool,
            stop: threading.Event | None = None) -> FolderReport:
        """Log what is new in `folder`, then look at changed flags; `stop` ends it between batches."""
        with _database_unavailable_is_transient():  # every write here, not only the batches
            return self._run(connection, folder, check_flags, stop)

    def _run(self, connection: ImapConnection, folder: FolderContext, check_flags: bool,
             stop: threading.Event | None) -> FolderReport:
        status = connection.select(folder.folder)
        first_sync, resync, since_modseq = self._prepare(folder, status)
        ctx = replace(folder, uidvalidity=status.uidvalidity, first_sync=first_sync, careful=resync)
        report = FolderReport(ctx.mailbox, ctx.folder)
        if not self.log_new(connection, ctx, report, stop):
            return report
        if check_flags:
            report.answered_by_flag = self.sync_flags(connection, ctx, status, since_modseq)
        self._finish(ctx, status)
        log.info("folder_synced", mailbox=ctx.mailbox, folder=ctx.folder, logged=report.logged,
                 duplicates=report.duplicates, answered_by_flag=report.answered_by_flag)
        return report

    def log_new(self, connection: ImapConnection, ctx: FolderContext, report: FolderReport,
                stop: threading.Event | None = None) -> bool:
        """Log the folder's new mail; False when `stop` ended it between batches.

        A backlog is logged in UID order, but between its batches the mail that arrived
        since the sync began ("newcomers") is logged first, at most a batch at a time: a
        customer who writes during a 50,000-message backlog waits behind one batch, not
        the whole backlog. Newcomers leave last_uid where the backlog is (the mail below
        them is not logged yet), so a process that dies meanwhile fetches them again and
        finds them logged (the folder's UIDs are unique); the finished backlog covers them.
        """
        backlog = connection.new_uids(self._last_uid(ctx))
        seen = backlog[-1] if backlog else 0
        fetched = connection.fetch_batches(backlog, self.batch_size)
        with ReadAhead(fetched, ahead=len(backlog) > self.batch_size) as batches:
            for batch in batches:  # the next batch is fetched while this one is stored
                for logged in self.store_batch(ctx, batch):
                    report.count(logged)
                if stop is not None and stop.is_set():
                    return False  # every committed batch moved last_uid: the rest comes next time
                if not batch or batch[-1].uid < backlog[-1]:
                    batches.pause()  # the connection is ours again
                    seen = self._newcomers_first(connection, ctx, seen, report)
        if backlog and seen > backlog[-1]:
            with self.db.session() as session:
                self._advance(session, ctx, seen)
        return True

    def _newcomers_first(self, connection: ImapConnection, ctx: FolderContext, seen: int,
                         report: FolderReport) -> int:
        """Log up to one batch of the mail that came after UID `seen`; the new `seen`."""
        newcomers = connection.arrived_after(seen)[:self.batch_size]
        for batch in connection.fetch_batches(newcomers, self.batch_size):
            for logged in self.store_batch(ctx, batch, move_last_uid=False):
                report.count(logged)
        return newcomers[-1] if newcomers else seen

    def _prepare(self, ctx: FolderContext, status: FolderStatus) -> tuple[bool, bool, int | None]:
        """First sync? Resync (UIDVALIDITY changed, old mail comes again)? And the stored MODSEQ."""
        with self.db.session() as session:
            state = folder_state(session, ctx.mailbox, ctx.folder)
            first_sync = state.last_sync_at is None  # never read to the end before
            if state.uidvalidity == status.uidvalidity:
                # An interrupted resync needs no memory: a message met again violates a unique
                # key, and its batch is retried carefully, one message at a time.
                return first_sync, False, state.highest_modseq
            resync = state.uidvalidity is not None
            if resync:
                log.warning("uidvalidity_changed", mailbox=ctx.mailbox, folder=ctx.folder,
                            old=state.uidvalidity, new=status.uidvalidity)
            state.uidvalidity, state.last_uid, state.highest_modseq = status.uidvalidity, 0, None
            return first_sync, resync, None

    def _last_uid(self, ctx: FolderContext) -> int:
        with self.db.session() as session:
            return folder_state(session, ctx.mailbox, ctx.folder).last_uid

    def store_batch(self, ctx: FolderContext, batch: list[FetchedMessage], move_last_uid: bool = True) -> list[Logged]:
        """Record a batch, one transaction per chunk of at most STORE_CHUNK messages."""
        return [logged for start in range(0, len(batch), STORE_CHUNK)
                for logged in self._store_chunk(ctx, batch[start:start + STORE_CHUNK], move_last_uid)]

    def _store_chunk(self, ctx: FolderContext, batch: list[FetchedMessage], move_last_uid: bool) -> list[Logged]:
        """Record a chunk in one transaction; on failure, one message at a time."""
        if not batch:
            return []
        try:
            with _database_unavailable_is_transient(), self.db.session() as session:
                now = self.clock()
                logged = record_batch(session, ctx, batch, now)
                if move_last_uid:
                    self._advance(session, ctx, batch[-1].uid)
            for item in logged:  # committed: only now is it true that they are logged
                log_logged(ctx, item)
            self.on_commit(logged)
            return logged
        except TransientError:
            raise  # nothing was committed: the same batch is fetched again after a backoff
        except Exception as exc:  # noqa: BLE001 - find the one message that fails
            log.warning("batch_retried_singly", mailbox=ctx.mailbox, folder=ctx.folder,
                        first_uid=batch[0].uid, error=exc.__class__.__name__)
            return [self.store_one(ctx, fetched, move_last_uid) for fetched in batch]

    def store_one(self, ctx: FolderContext, fetched: FetchedMessage, move_last_uid: bool = True) -> Logged:
        """Record one message; a poison message is quarantined and never blocks the rest."""
        try:
            with _database_unavailable_is_transient(), self.db.session() as session:
                logged = record_message(session, replace(ctx, careful=True), fetched, self.clock())
                if move_last_uid:
                    self._advance(session, ctx, fetched.uid)
            log_logged(ctx, logged)
            self.on_commit([logged])
            return logged
        except TransientError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything a message can trigger
            log.exception("message_record_failed", mailbox=ctx.mailbox, uid=fetched.uid)
            with self.db.session() as session:
                logged = record_unparsable(session, ctx, fetched, self.clock(), repr(exc))
                if move_last_uid:
                    self._advance(session, ctx, fetched.uid)
            return logged

    @staticmethod
    def _advance(session: Session, ctx: FolderContext, uid: int) -> None:
        state = folder_state(session, ctx.mailbox, ctx.folder)
        if state.uidvalidity == ctx.uidvalidity:
            state.last_uid = max(state.last_uid, uid)

    def sync_flags(self, connection: ImapConnection, ctx: FolderContext, status: FolderStatus,
                   since_modseq: int | None) -> int:
        """Notice \\Answered flags set by mail clients; returns how many threads that answered."""
        if status.highest_modseq is not None:
            if since_modseq is None or status.highest_modseq <= since_modseq:
                return 0  # first sync (flags came with the fetch) or nothing changed
            flags = connection.changed_flags(since_modseq)
        else:
            flags = connection.flags(self._open_thread_uids(ctx))  # no CONDSTORE: re-read open threads
        with self.db.session() as session:
            return len(record_flags(session, ctx, flags, self.clock()))

    def _open_thread_uids(self, ctx: FolderContext) -> list[int]:
        with self.db.session() as session:
            return list(session.scalars(
                select(Message.uid).join(Thread, Message.thread_id == Thread.id).where(
                    Thread.status == ThreadStatus.OPEN, Message.mailbox == ctx.mailbox, Message.folder == ctx.folder,
                    Message.uidvalidity == ctx.uidvalidity, Message.category == Category.CUSTOMER.value,
                )
            ))

    def _finish(self, ctx: FolderContext, status: FolderStatus) -> None:
        with self.db.session() as session:
            state = folder_state(session, ctx.mailbox, ctx.folder)
            state.last_sync_at = self.clock()
            if state.uidvalidity == status.uidvalidity and status.highest_modseq is not None:
                state.highest_modseq = status.highest_modseq
