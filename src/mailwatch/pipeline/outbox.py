"""The transactional outbox: queue mail with the change that caused it, send it later.

Rows are inserted in the caller's transaction (so an ack exists exactly when its
message is logged) and drained by `Outbox.drain`: claim due rows under a lease,
send them over a few SMTP connections kept from round to round, and write what the
server said before that connection hands over its next mail. Each row is marked
`sending_since` before it is handed over, so after a crash only the rows inside an
SMTP transaction can go out twice (with the same Message-ID, which is part of the
stored bytes); nothing queued is ever lost. The writes of all connections share
transactions (`_Ledger`), and every UPDATE checks the claim token, so a row whose
lease another sender took over is never overwritten.
"""

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP

import structlog
from sqlalchemy import Table, Update, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailwatch.db.engine import Database
from mailwatch.db.models import OutboxKind, OutboxMail, OutboxStatus
from mailwatch.errors import AuthenticationError, PermanentError, SmtpUnavailable, TransientError
from mailwatch.mail.compose import ComposedMail
from mailwatch.retry import backoff_s
from mailwatch.smtp import SmtpSender

log = structlog.get_logger(__name__)

PENDING, SENT, FAILED = OutboxStatus.PENDING, OutboxStatus.SENT, OutboxStatus.FAILED
LOST = "lost"  # an outcome, not a status: another sender took the row over
CLAIM_BATCH = 300  # rows claimed per round; each connection sends its share in turn
NEWEST_SHARE = 0.5  # of a round taken from the newest due rows (see `Outbox.claim`)
OUTBOX = OutboxMail.__table__  # the drain writes plain UPDATEs: no ORM objects to load, compare and flush
RELEASED = {"claimed_until": None, "claim_token": None, "sending_since": None}  # a claim given back


def _claimed_rows(**values: object) -> Update:
    """UPDATE the rows :ids that still carry the claim :token; returns the ids it updated.

    Built once: a statement made afresh for each write cost more CPU than running it.
    """
    return (update(OUTBOX)
            .where(OUTBOX.c.claim_token == bindparam("token"), OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
            .values(**values).returning(OUTBOX.c.id))


def _insert_new(insert: Callable[[Table], sqlite.Insert | postgresql.Insert]) -> sqlite.Insert | postgresql.Insert:
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT, inserted or not.
    return insert(OUTBOX).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(OUTBOX.c.id)


# Built once per dialect and run with a parameter dict: compiling a fresh ORM
# insert().values() for each mail was most of enqueue's cost (450 → 90 µs of CPU).
ENQUEUE = {"sqlite": _insert_new(sqlite.insert), "postgresql": _insert_new(postgresql.insert)}
MARK_SENDING = _claimed_rows(sending_since=bindparam("now"))  # about to be handed over
RECORD_SENT = _claimed_rows(status=SENT, sent_at=bindparam("now"), last_error=None, **RELEASED)
RECORD_DEFERRED = _claimed_rows(status=bindparam("status"), attempts=bindparam("attempts"),
                                last_error=bindparam("last_error"), next_attempt_at=bindparam("retry_at"), **RELEASED)
RECORD_FAILED = _claimed_rows(status=bindparam("status"), attempts=bindparam("attempts"),
                              last_error=bindparam("last_error"), **RELEASED)
RELEASE = _claimed_rows(claimed_until=None, claim_token=None)  # never tried: claimable again at once


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, and when to stop trying."""

    initial: timedelta = timedelta(seconds=30)
    maximum: timedelta = timedelta(minutes=30)
    give_up_after: timedelta = timedelta(days=2)
    # A claim not renewed for this long was a crash; live senders renew it every third of it.
    lease: timedelta = timedelta(seconds=30)

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        """Wait before attempt `attempts + 1`."""
        return timedelta(seconds=backoff_s(attempts, self.initial.total_seconds(), self.maximum.total_seconds(), rng))


def enqueue(
    session: Session, *, kind: OutboxKind, dedupe_key: str, message: ComposedMail | EmailMessage, recipient: str,
    envelope_from: str, now: datetime, thread_id: int | None = None,
    status: OutboxStatus = OutboxStatus.PENDING, source_domain: str | None = None, recipient_key: str | None = None,
) -> bool:
    """Queue one message in the caller's transaction; False if `dedupe_key` was queued before.

    `status=HELD`: an ack that waits for budget (`acks.release_held`), never claimed as is.
    A Core INSERT: the session's pending ORM changes are not flushed first.
    """
    if isinstance(message, EmailMessage):  # hand-built mail (tests); ours is composed already
        message = ComposedMail(message["Message-ID"], str(message["Subject"] or ""), message.as_bytes(policy=SMTP))
    row = {
        "kind": kind, "dedupe_key": dedupe_key, "thread_id": thread_id, "message_id": message.message_id,
        "recipient": recipient, "envelope_from": envelope_from, "subject": message.subject,
        "content": message.content, "status": status, "attempts": 0, "source_domain": source_domain,
        "recipient_key": recipient_key, "next_attempt_at": now, "created_at": now,
    }
    return session.execute(ENQUEUE[session.get_bind().dialect.name], row).first() is not None


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: OutboxKind
    recipient: str
    envelope_from: str
    content: bytes  # the exact bytes, Message-ID included: a repeat is the same mail
    attempts: int
    created_at: datetime
    thread_id: int | None
    message_id: str
    token: str  # our claim: recording is ours only while the row still carries it


# The columns a claim reads, in the order of Claimed's fields (token aside).
CLAIMED_COLUMNS = (OUTBOX.c.id, OUTBOX.c.kind, OUTBOX.c.recipient, OUTBOX.c.envelope_from, OUTBOX.c.content,
                   OUTBOX.c.attempts, OUTBOX.c.created_at, OUTBOX.c.thread_id, OUTBOX.c.message_id)
Attempt = tuple[Claimed, Exception | None]  # a finished attempt: sent (None) or the error that stopped it


@dataclass
class DrainReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    sent_by_kind: Counter[str] = field(default_factory=Counter)
    failed_by_kind: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None
    database_error: str | None = None  # a write failed: the round stopped, nothing more was sent

    def count(self, kind: str, outcome: str, error: str | None) -> None:
        """Add one recorded attempt."""
        if outcome == SENT:
            self.sent += 1
            self.sent_by_kind[kind] += 1
        elif outcome == FAILED:
            self.failed += 1
            self.failed_by_kind[kind] += 1
        elif outcome == PENDING:
            self.deferred += 1
        if error is not None:
            self.last_error = error


@dataclass(frozen=True)
class Result:
    """What one attempt writes to its row."""

    status: OutboxStatus
    attempts: int
    last_error: str | None = None
    retry_at: datetime | None = None  # a deferred mail's next attempt


@dataclass(frozen=True)
class Written:
    """What one transaction stored: each attempt's outcome (LOST: not ours any more) and the rows marked sending."""

    outcomes: dict[int, tuple[str, str | None]]  # outbox id → (outcome, stored error)
    marked: set[int]


class _Ledger:
    """The round's writes, committed together: whatever arrives while one commit runs goes in the next.

    Each connection waits for its own write before it hands over another mail, so sharing
    the transaction costs no guarantee; three connections need about one commit per mail.
    """

    def __init__(self, write: Callable[[list[Attempt], list[Claimed]], Written]) -> None:
        self._write = write
        self._queue: list[tuple[list[Attempt], list[Claimed], asyncio.Future[Written]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def write(self, finished: list[Attempt], marks: list[Claimed]) -> Written:
        """Queue outcomes and marks for the next transaction; returns once it is committed."""
        future: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        self._queue.append((finished, marks, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued())
        return await future

    async def _commit_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            finished = [attempt for attempts, _marks, _future in batch for attempt in attempts]
            marks = [item for _attempts, items, _future in batch for item in items]
            try:
                written = await asyncio.to_thread(self._write, finished, marks)
            except Exception as exc:  # noqa: BLE001 - each writer decides what a failure means to it
                for *_, future in batch:
                    if not future.done():  # a writer cancelled meanwhile (shutdown) no longer waits
                        future.set_exception(exc)
                continue
            for *_, future in batch:
                if not future.done():
                    future.set_result(written)


@dataclass
class _Round:
    """One claimed batch while it is being sent."""

    claimed: list[Claimed]
    ledger: _Ledger
    queued: asyncio.Event | None = None  # set when new mail is queued: end this round early for it
    tried: set[int] = field(default_factory=set)  # handed to a sender (marked sending)
    halted: bool = False  # a database write failed: send nothing more until it works again

    def untried(self) -> list[Claimed]:
        return [item for item in self.claimed if item.id not in self.tried]

    def superseded(self) -> bool:
        """New mail was queued since this round was claimed: the next round should take it first."""
        return self.queued is not None and self.queued.is_set()


class Outbox:
    """Drains the outbox through SMTP senders made by `connect`.

    A database write that fails mid-round stops the round: the outcome of a mail the
    server accepted is kept here and written first thing next drain (never sent again),
    and the claims not yet tried are released so they need not wait out their lease.
    """

    def __init__(
        self, db: Database, connect: Callable[[], SmtpSender], clock: Callable[[], datetime],
        policy: RetryPolicy = RetryPolicy(), connections: int = 3, rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.connect = connect
        self.clock = clock
        self.policy = policy
        self.connections = connections
        self.rng = rng or random.Random()
        self.unrecorded: list[Attempt] = []  # outcomes a failed write left owed
        self.unreleased: list[Claimed] = []  # claims never tried whose release failed
        self._kept: list[SmtpSender] | None = None  # connections held open by `kept_connections`
        self._newest_claimed: int | None = None  # the highest outbox id claimed so far: above it is fresh

    async def drain(self, stop: asyncio.Event | None = None, queued: asyncio.Event | None = None) -> DrainReport:
        """Send everything due now, a round at a time, until done or `stop` is set.

        `queued` is set by whoever queues mail meanwhile: the round in progress then ends
        after each connection's current mail, and the next round, which starts with the
        newest rows, takes the new mail. So a customer's ack never waits behind a round of
        another mailbox's backlog, only behind the mails in flight.
        """
        report = DrainReport()
        if not await self._settle(report):
            return report  # the database still refuses writes: sending more would only add debts
        async with self._senders() as senders:
            while not (stop and stop.is_set()):
                if queued is not None:
                    queued.clear()  # the claim below sees everything committed before this
                if not (claimed := await self._claim(report)):
                    break
                if not await self._send_round(_Round(claimed, _Ledger(self.write), queued), senders, report):
                    break  # the database or the server is unwell: leave the rest for the next round
        return report

    @asynccontextmanager
    async def kept_connections(self) -> AsyncIterator[None]:
        """Keep the SMTP connections open from drain to drain until the block ends, then close them.

        In between, each still closes itself after its idle time and reopens on the next send.
        """
        if self._kept is not None:
            raise RuntimeError("the outbox's connections are kept already")
        self._kept = [self.connect() for _ in range(self.connections)]
        try:
            yield
        finally:
            senders, self._kept = self._kept, None
            await asyncio.gather(*(sender.close() for sender in senders))

    @asynccontextmanager
    async def _senders(self) -> AsyncIterator[list[SmtpSender]]:
        """The kept connections, or, outside `kept_connections`, ones for this drain's rounds only."""
        if self._kept is not None:
            yield self._kept
            return
        senders = [self.connect() for _ in range(self.connections)]
        try:
            yield senders
        finally:
            await asyncio.gather(*(sender.close() for sender in senders))

    async def _send_round(self, batch: _Round, senders: list[SmtpSender], report: DrainReport) -> bool:
        """Send one claimed batch, a share per connection; False if the database or the server is unwell."""
        claimed = batch.claimed
        async with self._renewing(claimed[0].token):
            shares = [claimed[i :: self.connections] for i in range(self.connections)]
            # Every share ends before the release, and one share's surprise never strands the others' rows.
            results = await asyncio.gather(*(self._send_share(share, sender, batch, report)
                                             for share, sender in zip(shares, senders, strict=True) if share),
                                           return_exceptions=True)
        await self._release_untried(batch)
        if errors := [result for result in results if isinstance(result, BaseException)]:
            raise errors[0]
        return not (batch.halted or (report.deferred and not report.sent))

    async def _claim(self, report: DrainReport) -> list[Claimed]:
        try:
            claimed = await asyncio.to_thread(self.claim, CLAIM_BATCH, self._newest_claimed)
        except SQLAlchemyError as exc:
            report.database_error = _database_error(exc)
            log.error("outbox_claim_failed", error=report.database_error)
            return []
        if claimed:
            self._newest_claimed = max(self._newest_claimed or 0, *(item.id for item in claimed))
        return claimed

    def release_claims(self) -> int:
        """Forget every lease: only safe when no other instance can be sending (SQLite)."""
        with self.db.session() as session:
            return session.execute(
                update(OUTBOX).where(OUTBOX.c.claimed_until.is_not(None)).values(claimed_until=None, claim_token=None)
            ).rowcount

    def claim(self, limit: int, fresh_after: int | None = None) -> list[Claimed]:
        """Lease up to `limit` due rows to this process (skipping rows others hold), oldest first.

        When more is due than a round holds (one mailbox's flood, a long SMTP outage), the
        round takes the newest due rows, up to half of it, and the oldest fill the rest: a
        customer who writes now is acknowledged in the next round, not after thousands, and
        the oldest mail still goes out every round. Rows queued since the last claim (ids
        above `fresh_after`) are sent first in their round.
        """
        now, token = self.clock(), uuid.uuid4().hex
        with self.db.session() as session:
            rows = self._due(session, now, limit, newest_first=False)
            if len(rows) == limit:
                taken = {row.id for row in rows}
                newest = [row for row in self._due(session, now, int(limit * NEWEST_SHARE), newest_first=True)
                          if row.id not in taken]
                rows = newest + rows[:limit - len(newest)]
            if fresh_after is not None:
                rows.sort(key=lambda row: row.id <= fresh_after)  # stable: otherwise in the order above
            if rows:
                session.execute(update(OUTBOX).where(OUTBOX.c.id.in_([row.id for row in rows]))
                                .values(claimed_until=now + self.policy.lease, claim_token=token, sending_since=None))
        for row in rows:
            if row.sending_since:
                # A sender died inside the SMTP transaction: the server may have the mail already.
                log.warning("mail_resent_after_interrupted_send", outbox_id=row.id, message_id=row.message_id,
                            sending_since=row.sending_since.isoformat(), hint="a repeat carries the same Message-ID")
        return [Claimed(*row[:-1], token) for row in rows]

    @staticmethod
    def _due(session: Session, now: datetime, limit: int, newest_first: bool) -> list:
        order = (OUTBOX.c.next_attempt_at.desc(), OUTBOX.c.id.desc()) if newest_first else \
            (OUTBOX.c.next_attempt_at, OUTBOX.c.id)
        return list(session.execute(
            select(*CLAIMED_COLUMNS, OUTBOX.c.sending_since)
            .where(OUTBOX.c.status == PENDING, OUTBOX.c.next_attempt_at <= now,
                   or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until < now))
            .order_by(*order)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()) if limit > 0 else []

    def renew(self, token: str) -> int:
        """Push our claim's lease forward while we still work on it; returns the rows renewed."""
        now = self.clock()
        with self.db.session() as session:
            return session.execute(
                update(OUTBOX).where(OUTBOX.c.claim_token == token, OUTBOX.c.status == PENDING)
                .values(claimed_until=now + self.policy.lease)
            ).rowcount

    @asynccontextmanager
    async def _renewing(self, token: str) -> AsyncIterator[None]:
        """Renew the lease while the round runs, so a short lease only ever expires for the dead."""
        task = asyncio.create_task(self._renew_every(token, self.policy.lease.total_seconds() / 3))
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _renew_every(self, token: str, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.renew, token)
            except SQLAlchemyError as exc:
                log.warning("outbox_lease_renewal_failed", error=_database_error(exc))

    async def _send_share(self, share: list[Claimed], sender: SmtpSender, batch: _Round, report: DrainReport) -> None:
        """Send a share over one connection; a mail's outcome is written before the next is handed over.

        That write also marks the next mail sending, in a transaction the other connections'
        writes share: a stop or crash repeats at most the mail in flight on each connection.
        When the connection itself fails, the rest of the share is deferred untried.
        """
        finished: list[Attempt] = []
        for index, item in enumerate(share):
            if batch.halted or (index and batch.superseded()):
                break  # the rest is released untried once the round ends (each round sends one at least)
            marked = await self._write(finished, [item], batch, report)
            finished = []
            if item.id not in marked:
                continue  # the write failed (halted) or another sender holds the row now
            batch.tried.add(item.id)
            try:
                await sender.send(item.envelope_from, item.recipient, item.content)
            except (SmtpUnavailable, AuthenticationError) as exc:
                finished = [(rest, exc) for rest in share[index:]]
                batch.tried.update(rest.id for rest in share[index:])
                break
            except (TransientError, PermanentError) as exc:
                finished = [(item, exc)]
            else:
                finished = [(item, None)]
        if finished:
            await self._write(finished, [], batch, report)

    async def _write(self, finished: list[Attempt], marks: list[Claimed], batch: _Round,
                     report: DrainReport) -> set[int]:
        """Write through the round's ledger; the ids marked sending (none if the write failed)."""
        try:
            written = await batch.ledger.write(finished, marks)
        except SQLAlchemyError as exc:
            # The server has answered; only the write failed. Keep the answers and write them later.
            self._owe(finished, exc)
            self._halt(batch, report, exc)
            return set()
        _count(report, finished, written)
        return written.marked

    def _owe(self, finished: list[Attempt], exc: SQLAlchemyError) -> None:
        self.unrecorded.extend(finished)
        for item, error in finished:
            log.error("outbox_record_failed", outbox_id=item.id, message_id=item.message_id,
                      sent=error is None, error=_database_error(exc), hint="written again before anything is sent")

    @staticmethod
    def _halt(batch: _Round, report: DrainReport, exc: SQLAlchemyError) -> None:
        batch.halted = True
        report.database_error = _database_error(exc)

    async def _settle(self, report: DrainReport) -> bool:
        """Write the outcomes and releases a failed write left owed; False while still failing."""
        if owed := self.unrecorded:
            try:
                written = await asyncio.to_thread(self.write, owed, [])
            except SQLAlchemyError as exc:
                report.database_error = _database_error(exc)
                return False
            self.unrecorded = []
            _count(report, owed, written)
        if self.unreleased:
            owed_claims, self.unreleased = self.unreleased, []
            await self._release(owed_claims)
        return not self.unreleased

    async def _release_untried(self, batch: _Round) -> None:
        if untried := batch.untried():
            await self._release(untried)

    async def _release(self, items: list[Claimed]) -> None:
        try:
            await asyncio.to_thread(self.release, items)
        except SQLAlchemyError as exc:
            self.unreleased.extend(items)
            log.error("outbox_release_failed", rows=len(items), error=_database_error(exc))

    def release(self, items: list[Claimed]) -> int:
        """Give back claims we never tried, so that the next round sends them at once."""
        with self.db.session() as session:
            return len(_update_claimed(session, RELEASE, items))

    def write(self, finished: list[Attempt], marks: list[Claimed]) -> Written:
        """One transaction: the outcomes of finished attempts, and the marks of mails about to be handed over.

        A row is written only while it carries our claim token: one another sender took over
        keeps what that sender wrote, and our outcome for it is LOST.
        """
        now = self.clock()
        results = [(item, self.result(item, error, now)) for item, error in finished]
        with self.db.session() as session:
            stored = _store_results(session, results, now)
            marked = _update_claimed(session, MARK_SENDING, marks, now=now)
        outcomes = {}
        for item, result in results:
            outcome = result.status if item.id in stored else LOST
            announce(item, outcome, result)  # after the commit: the log says only what is stored
            outcomes[item.id] = (outcome, result.last_error if outcome != LOST else None)
        return Written(outcomes, marked)

    def result(self, item: Claimed, error: Exception | None, now: datetime) -> Result:
        """Sent; deferred with backoff; or failed for good (a permanent error, or queued give_up_after ago)."""
        if error is None:
            return Result(SENT, item.attempts)
        attempts, message = item.attempts + 1, str(error)[:2000]
        if isinstance(error, PermanentError) or now - item.created_at >= self.policy.give_up_after:
            return Result(FAILED, attempts, message)
        return Result(PENDING, attempts, message, now + self.policy.delay(attempts, self.rng))


def _store_results(session: Session, results: list[tuple[Claimed, Result]], now: datetime) -> set[int]:
    """The sent mails in one UPDATE per claim, each failure in its own; the ids that were ours."""
    stored = _update_claimed(session, RECORD_SENT, [item for item, result in results if result.status == SENT], now=now)
    for item, result in results:
        if result.status != SENT:
            failure = {"status": result.status, "attempts": result.attempts, "last_error": result.last_error}
            if result.retry_at:
                stored |= _update_claimed(session, RECORD_DEFERRED, [item], retry_at=result.retry_at, **failure)
            else:
                stored |= _update_claimed(session, RECORD_FAILED, [item], **failure)
    return stored


def _update_claimed(session: Session, statement: Update, items: list[Claimed], **params: object) -> set[int]:
    """Run a `_claimed_rows` statement for `items`, one execution per claim token; the ids updated."""
    by_token: dict[str, list[int]] = {}
    for item in items:
        by_token.setdefault(item.token, []).append(item.id)
    updated: set[int] = set()
    for token, ids in by_token.items():
        updated.update(session.scalars(statement, {"token": token, "ids": ids, **params}))
    return updated


def _count(report: DrainReport, finished: list[Attempt], written: Written) -> None:
    for item, _error in finished:
        outcome, message = written.outcomes[item.id]
        report.count(item.kind, outcome, message)


def announce(item: Claimed, outcome: str, result: Result) -> None:
    """An attempt's event, logged once its outcome is committed."""
    if outcome == LOST:
        log.warning("outbox_lease_lost", outbox_id=item.id, kind=item.kind)
    elif outcome == SENT:
        log.info("mail_sent", kind=item.kind, outbox_id=item.id, thread=item.thread_id,
                 recipient=item.recipient, message_id=item.message_id)
    elif outcome == FAILED:
        log.error("mail_failed", kind=item.kind, outbox_id=item.id, thread=item.thread_id,
                  recipient=item.recipient, attempts=result.attempts, error=result.last_error)
    else:
        log.warning("mail_deferred", kind=item.kind, outbox_id=item.id, recipient=item.recipient,
                    attempts=result.attempts, retry_at=result.retry_at.isoformat(), error=result.last_error)


def _database_error(exc: SQLAlchemyError) -> str:
    detail = getattr(exc, "orig", None) or exc
    return f"{exc.__class__.__name__}: {str(detail)[:200]}"


def outbox_depth(session: Session, now: datetime) -> tuple[int, timedelta | None]:
    """How many mails wait to be sent, and how long the oldest has waited."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxMail.created_at)).where(OutboxMail.status == PENDING)
    ).one()
    return count, (now - oldest) if oldest is not None else None
