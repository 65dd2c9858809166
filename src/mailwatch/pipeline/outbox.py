"""The transactional outbox: queue mail with the change that caused it, send it later.

Rows are inserted in the caller's transaction (so an ack exists exactly when its
message is logged) and drained by `Outbox.drain`: claim due rows under a lease,
send them over a few reused SMTP connections, record what the server said.
A crash after the server accepted a message but before the commit repeats at most
that message once the lease expires; nothing queued is ever lost.
"""

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP

import structlog
from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailwatch.db.engine import Database
from mailwatch.db.models import OutboxKind, OutboxMail, OutboxStatus
from mailwatch.errors import AuthenticationError, PermanentError, SmtpUnavailable, TransientError
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
    lease: timedelta = timedelta(minutes=2)  # a claim older than this was a crash

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        """Wait before attempt `attempts + 1`."""
        return timedelta(seconds=backoff_s(attempts, self.initial.total_seconds(), self.maximum.total_seconds(), rng))


def enqueue(
    session: Session, *, kind: OutboxKind, dedupe_key: str, message: EmailMessage, recipient: str,
    envelope_from: str, now: datetime, thread_id: int | None = None,
    status: OutboxStatus = OutboxStatus.PENDING, source_domain: str | None = None, recipient_key: str | None = None,
) -> bool:
    """Queue one message in the caller's transaction; False if `dedupe_key` was queued before.

    `status=HELD`: an ack that waits for budget (`acks.release_held`), never claimed as is.
    """
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    statement = dialect.insert(OutboxMail).values(
        kind=kind, dedupe_key=dedupe_key, thread_id=thread_id, message_id=message["Message-ID"],
        recipient=recipient, envelope_from=envelope_from, subject=str(message["Subject"] or ""),
        content=message.as_bytes(policy=SMTP), status=status, attempts=0, source_domain=source_domain,
        recipient_key=recipient_key,
        next_attempt_at=now, created_at=now,
    ).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return session.execute(statement).rowcount == 1


@dataclass(frozen=True)
class Claimed:
    id: int
    kind: OutboxKind
    recipient: str
    envelope_from: str
    content: bytes
    attempts: int
    created_at: datetime
    thread_id: int | None
    claimed_until: datetime  # our lease: recording is ours only while it is unchanged


@dataclass
class DrainReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    sent_by_kind: Counter[str] = field(default_factory=Counter)
    failed_by_kind: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None


class Outbox:
    """Drains the outbox through SMTP senders made by `connect`."""

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

    async def drain(self, stop: asyncio.Event | None = None) -> DrainReport:
        """Send everything due now, a round at a time, until done or `stop` is set."""
        report = DrainReport()
        while not (stop and stop.is_set()) and (claimed := await asyncio.to_thread(self.claim, CLAIM_BATCH)):
            shares = [claimed[i :: self.connections] for i in range(self.connections)]
            await asyncio.gather(*(self._send_share(share, report) for share in shares if share))
            if report.deferred and not report.sent:
                break  # the server is unwell: leave the rest for the next round
        return report

    def release_claims(self) -> int:
        """Forget every lease: only safe when no other instance can be sending (SQLite)."""
        with self.db.session() as session:
            rows = session.scalars(select(OutboxMail).where(OutboxMail.claimed_until.is_not(None))).all()
            for row in rows:
                row.claimed_until = None
            return len(rows)

    def claim(self, limit: int) -> list[Claimed]:
        """Lease up to `limit` due rows to this process (skipping rows others hold)."""
        now = self.clock()
        with self.db.session() as session:
            rows = session.scalars(
                select(OutboxMail)
                .where(OutboxMail.status == PENDING, OutboxMail.next_attempt_at <= now,
                       or_(OutboxMail.claimed_until.is_(None), OutboxMail.claimed_until < now))
                .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            lease = now + self.policy.lease
            for row in rows:
                row.claimed_until = lease
            return [Claimed(row.id, row.kind, row.recipient, row.envelope_from, row.content,
                            row.attempts, row.created_at, row.thread_id, lease) for row in rows]

    async def _send_share(self, share: list[Claimed], report: DrainReport) -> None:
        """Send a share over one connection, recording each outcome as soon as it is known.

        Recording at once means a stop or crash can repeat at most the mail in flight;
        when the connection itself fails, the rest of the share is deferred untried.
        """
        sender = self.connect()
        try:
            for index, item in enumerate(share):
                try:
                    await sender.send(item.envelope_from, item.recipient, item.content)
                except (SmtpUnavailable, AuthenticationError) as exc:
                    for rest in share[index:]:
                        await self._record(rest, exc, report)
                    return
                except (TransientError, PermanentError) as exc:
                    await self._record(item, exc, report)
                else:
                    await self._record(item, None, report)
        finally:
            await sender.close()

    async def _record(self, item: Claimed, error: Exception | None, report: DrainReport) -> None:
        outcome, message = await asyncio.to_thread(self.record, item, error)
        if outcome == SENT:
            report.sent += 1
            report.sent_by_kind[item.kind] += 1
        elif outcome == FAILED:
            report.failed += 1
            report.failed_by_kind[item.kind] += 1
        elif outcome == PENDING:
            report.deferred += 1
        if error is not None:
            report.last_error = message

    def record(self, item: Claimed, error: Exception | None) -> tuple[str, str | None]:
        """Write one attempt's outcome: sent, deferred with backoff, or failed for good."""
        now = self.clock()
        with self.db.session() as session:
            row = session.get(OutboxMail, item.id)
            if row.claimed_until != item.claimed_until:
                # Our lease ran out and another sender took the row over: its result counts.
                log.warning("outbox_lease_lost", outbox_id=item.id, kind=item.kind)
                return LOST, None
            row.claimed_until = None
            if error is None:
                row.status, row.sent_at, row.last_error = SENT, now, None
                log.info("mail_sent", kind=item.kind, outbox_id=item.id, thread=item.thread_id,
                         recipient=item.recipient, message_id=row.message_id)
                return SENT, None
            return self._record_failure(row, error, now), row.last_error

    def _record_failure(self, row: OutboxMail, error: Exception, now: datetime) -> str:
        row.attempts += 1
        row.last_error = str(error)[:2000]
        gave_up = now - row.created_at >= self.policy.give_up_after
        if isinstance(error, PermanentError) or gave_up:
            row.status = FAILED
            log.error("mail_failed", kind=row.kind, outbox_id=row.id, thread=row.thread_id,
                      recipient=row.recipient, attempts=row.attempts, error=row.last_error)
            return FAILED
        row.next_attempt_at = now + self.policy.delay(row.attempts, self.rng)
        log.warning("mail_deferred", kind=row.kind, outbox_id=row.id, recipient=row.recipient,
                    attempts=row.attempts, retry_at=row.next_attempt_at.isoformat(), error=row.last_error)
        return PENDING


def outbox_depth(session: Session, now: datetime) -> tuple[int, timedelta | None]:
    """How many mails wait to be sent, and how long the oldest has waited."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxMail.created_at)).where(OutboxMail.status == PENDING)
    ).one()
    return count, (now - oldest) if oldest is not None else None
