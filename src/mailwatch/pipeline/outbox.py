"""The transactional outbox: queue mail with the change that caused it, send it later.

Rows are inserted in the caller's transaction (so an ack exists exactly when its
message is logged) and drained by `Outbox.drain`: claim due rows under a lease,
send them over a few reused SMTP connections, record what the server said the
moment it says it, in a transaction of its own. Each row is marked `sending_since`
before it is handed over, so after a crash only the rows inside an SMTP transaction
can go out twice (with the same Message-ID, which is part of the stored bytes);
nothing queued is ever lost.
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
from sqlalchemy import func, or_, select, update
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
    """
    if isinstance(message, EmailMessage):  # hand-built mail (tests); ours is composed already
        message = ComposedMail(message["Message-ID"], str(message["Subject"] or ""), message.as_bytes(policy=SMTP))
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    statement = dialect.insert(OutboxMail).values(
        kind=kind, dedupe_key=dedupe_key, thread_id=thread_id, message_id=message.message_id,
        recipient=recipient, envelope_from=envelope_from, subject=message.subject,
        content=message.content, status=status, attempts=0, source_domain=source_domain,
        recipient_key=recipient_key,
        next_attempt_at=now, created_at=now,
    ).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(OutboxMail.id)
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT, inserted or not.
    return session.execute(statement).first() is not None


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


@dataclass
class _Round:
    """One claimed batch while it is being sent."""

    claimed: list[Claimed]
    tried: set[int] = field(default_factory=set)  # handed to a sender (marked sending)
    halted: bool = False  # a database write failed: send nothing more until it works again

    def untried(self) -> list[Claimed]:
        return [item for item in self.claimed if item.id not in self.tried]


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
        self.unrecorded: list[tuple[Claimed, Exception | None]] = []  # outcomes a failed write left owed
        self.unreleased: list[Claimed] = []  # claims never tried whose release failed

    async def drain(self, stop: asyncio.Event | None = None) -> DrainReport:
        """Send everything due now, a round at a time, until done or `stop` is set."""
        report = DrainReport()
        if not await self._settle(report):
            return report  # the database still refuses writes: sending more would only add debts
        while not (stop and stop.is_set()) and (claimed := await self._claim(report)):
            batch = _Round(claimed)
            async with self._renewing(claimed[0].token):
                shares = [claimed[i :: self.connections] for i in range(self.connections)]
                # Every share ends before the release, and one share's surprise never strands the others' rows.
                results = await asyncio.gather(*(self._send_share(share, batch, report) for share in shares if share),
                                               return_exceptions=True)
            await self._release_untried(batch)
            if errors := [result for result in results if isinstance(result, BaseException)]:
                raise errors[0]
            if batch.halted or (report.deferred and not report.sent):
                break  # the database or the server is unwell: leave the rest for the next round
        return report

    async def _claim(self, report: DrainReport) -> list[Claimed]:
        try:
            return await asyncio.to_thread(self.claim, CLAIM_BATCH)
        except SQLAlchemyError as exc:
            report.database_error = _database_error(exc)
            log.error("outbox_claim_failed", error=report.database_error)
            return []

    def release_claims(self) -> int:
        """Forget every lease: only safe when no other instance can be sending (SQLite)."""
        with self.db.session() as session:
            rows = session.scalars(select(OutboxMail).where(OutboxMail.claimed_until.is_not(None))).all()
            for row in rows:
                row.claimed_until, row.claim_token = None, None
            return len(rows)

    def claim(self, limit: int) -> list[Claimed]:
        """Lease up to `limit` due rows to this process (skipping rows others hold)."""
        now, token = self.clock(), uuid.uuid4().hex
        with self.db.session() as session:
            rows = session.scalars(
                select(OutboxMail)
                .where(OutboxMail.status == PENDING, OutboxMail.next_attempt_at <= now,
                       or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now))
                .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            interrupted = [(row.id, row.message_id, row.sending_since) for row in rows if row.sending_since]
            for row in rows:
                row.claimed_until, row.claim_token, row.sending_since = now + self.policy.lease, token, None
            claimed = [Claimed(row.id, row.kind, row.recipient, row.envelope_from, row.content, row.attempts,
                               row.created_at, row.thread_id, row.message_id, token) for row in rows]
        for outbox_id, message_id, since in interrupted:
            # A sender died inside the SMTP transaction: the server may have the mail already.
            log.warning("mail_resent_after_interrupted_send", outbox_id=outbox_id, message_id=message_id,
                        sending_since=since.isoformat(), hint="a repeat carries the same Message-ID")
        return claimed

    def renew(self, token: str) -> int:
        """Push our claim's lease forward while we still work on it; returns the rows renewed."""
        now = self.clock()
        with self.db.session() as session:
            return session.execute(
                update(OutboxMail).where(OutboxMail.claim_token == token, OutboxMail.status == PENDING)
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

    async def _send_share(self, share: list[Claimed], batch: _Round, report: DrainReport) -> None:
        """Send a share over one connection, recording each outcome as soon as it is known.

        Recording at once means a stop or crash can repeat at most the mail in flight;
        when the connection itself fails, the rest of the share is deferred untried.
        """
        sender = self.connect()
        try:
            for index, item in enumerate(share):
                if batch.halted:
                    return  # the rest is released untried once the round ends
                if not await self._mark_sending(item, batch, report):
                    continue  # the write failed (halted) or another sender holds the row now
                try:
                    await sender.send(item.envelope_from, item.recipient, item.content)
                except (SmtpUnavailable, AuthenticationError) as exc:
                    for rest in share[index:]:
                        batch.tried.add(rest.id)
                        await self._record(rest, exc, batch, report)
                    return
                except (TransientError, PermanentError) as exc:
                    await self._record(item, exc, batch, report)
                else:
                    await self._record(item, None, batch, report)
        finally:
            await sender.close()

    async def _mark_sending(self, item: Claimed, batch: _Round, report: DrainReport) -> bool:
        """Note that the mail is being handed over; a write that fails here sends nothing."""
        try:
            marked = await asyncio.to_thread(self.mark_sending, item)
        except SQLAlchemyError as exc:
            self._halt(batch, report, exc)
            return False
        batch.tried.add(item.id)
        return marked

    def mark_sending(self, item: Claimed) -> bool:
        """Set `sending_since`; False if the row is no longer ours."""
        with self.db.session() as session:
            return session.execute(
                update(OutboxMail).where(OutboxMail.id == item.id, OutboxMail.claim_token == item.token)
                .values(sending_since=self.clock())
            ).rowcount == 1

    async def _record(self, item: Claimed, error: Exception | None, batch: _Round, report: DrainReport) -> None:
        try:
            outcome, message = await asyncio.to_thread(self.record, item, error)
        except SQLAlchemyError as exc:
            # The server has answered; only the write failed. Keep the answer and write it later.
            self.unrecorded.append((item, error))
            log.error("outbox_record_failed", outbox_id=item.id, message_id=item.message_id,
                      sent=error is None, error=_database_error(exc), hint="written again before anything is sent")
            self._halt(batch, report, exc)
            return
        report.count(item.kind, outcome, message if error is not None else None)

    @staticmethod
    def _halt(batch: _Round, report: DrainReport, exc: SQLAlchemyError) -> None:
        batch.halted = True
        report.database_error = _database_error(exc)

    async def _settle(self, report: DrainReport) -> bool:
        """Write the outcomes and releases a failed write left owed; False while still failing."""
        while self.unrecorded:
            item, error = self.unrecorded[0]
            try:
                outcome, message = await asyncio.to_thread(self.record, item, error)
            except SQLAlchemyError as exc:
                report.database_error = _database_error(exc)
                return False
            self.unrecorded.pop(0)
            report.count(item.kind, outcome, message if error is not None else None)
        if self.unreleased:
            owed, self.unreleased = self.unreleased, []
            await self._release(owed)
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
            return sum(session.execute(
                update(OutboxMail).where(OutboxMail.id == item.id, OutboxMail.claim_token == item.token)
                .values(claimed_until=None, claim_token=None)
            ).rowcount for item in items)

    def record(self, item: Claimed, error: Exception | None) -> tuple[str, str | None]:
        """Write one attempt's outcome: sent, deferred with backoff, or failed for good."""
        now = self.clock()
        with self.db.session() as session:
            row = session.get(OutboxMail, item.id)
            if row.claim_token != item.token:
                outcome = LOST  # our lease ran out and another sender took the row over: its result counts
            else:
                row.claimed_until, row.claim_token, row.sending_since = None, None, None
                outcome = self._apply(row, error, now)
        announce(row, outcome)  # after the commit: the log says only what is stored
        return outcome, row.last_error

    def _apply(self, row: OutboxMail, error: Exception | None, now: datetime) -> str:
        if error is None:
            row.status, row.sent_at, row.last_error = SENT, now, None
            return SENT
        return self._record_failure(row, error, now)

    def _record_failure(self, row: OutboxMail, error: Exception, now: datetime) -> str:
        row.attempts += 1
        row.last_error = str(error)[:2000]
        gave_up = now - row.created_at >= self.policy.give_up_after
        if isinstance(error, PermanentError) or gave_up:
            row.status = FAILED
            return FAILED
        row.next_attempt_at = now + self.policy.delay(row.attempts, self.rng)
        return PENDING


def announce(row: OutboxMail, outcome: str) -> None:
    """An attempt's event, logged once its outcome is committed."""
    if outcome == LOST:
        log.warning("outbox_lease_lost", outbox_id=row.id, kind=row.kind)
    elif outcome == SENT:
        log.info("mail_sent", kind=row.kind, outbox_id=row.id, thread=row.thread_id,
                 recipient=row.recipient, message_id=row.message_id)
    elif outcome == FAILED:
        log.error("mail_failed", kind=row.kind, outbox_id=row.id, thread=row.thread_id,
                  recipient=row.recipient, attempts=row.attempts, error=row.last_error)
    else:
        log.warning("mail_deferred", kind=row.kind, outbox_id=row.id, recipient=row.recipient,
                    attempts=row.attempts, retry_at=row.next_attempt_at.isoformat(), error=row.last_error)


def _database_error(exc: SQLAlchemyError) -> str:
    detail = getattr(exc, "orig", None) or exc
    return f"{exc.__class__.__name__}: {str(detail)[:200]}"


def outbox_depth(session: Session, now: datetime) -> tuple[int, timedelta | None]:
    """How many mails wait to be sent, and how long the oldest has waited."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxMail.created_at)).where(OutboxMail.status == PENDING)
    ).one()
    return count, (now - oldest) if oldest is not None else None
