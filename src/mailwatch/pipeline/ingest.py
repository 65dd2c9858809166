"""Turning fetched messages into logged rows: parse, classify, thread, record."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from mailwatch.db.models import Message, Thread
from mailwatch.imap import FetchedMessage
from mailwatch.mail.authresults import Authentication
from mailwatch.mail.parse import Address, ParsedMessage, parse_message, synthesised_stem
from mailwatch.mail.rules import (
    Category, Identity, Verdict, author, author_authentication, classify, reply_address, reply_to_own_address,
    staff_answer,
)
from mailwatch.pipeline.acks import Acknowledger, AckLedger, Received
from mailwatch.pipeline.threads import MAX_STORED_ID, KnownReferences, find_thread, known_references, open_thread
from mailwatch.sla import IMAP_LOGIN, AnsweredVia, ClockPolicy, apply_message, mark_answered, skip_escalations

log = structlog.get_logger(__name__)

ANSWERED_FLAG = "\\Answered"  # set by mail clients on the message someone replied to


@dataclass(frozen=True)
class FolderContext:
    """What recording a message needs to know about where it came from."""

    mailbox: str
    folder: str
    uidvalidity: int
    identity: Identity
    ticket_tag: re.Pattern[str]
    policy: ClockPolicy
    acknowledger: Acknowledger | None = None  # None for folders that never ack (Sent)
    sent_folder: bool = False  # staff replies filed here answer their threads
    first_sync: bool = False  # reading a folder's existing mail for the first time
    backlog_age: timedelta | None = None  # on a first sync, older mail is not escalated
    careful: bool = False  # look for each message before logging it (resync, retry)


@dataclass(frozen=True)
class Logged:
    """The outcome of recording one fetched message."""

    uid: int
    message_id: str
    category: str
    thread_id: int | None
    duplicate: bool = False
    ack_outcome: str | None = None
    reason: str = ""
    received_at: datetime | None = None


def log_logged(ctx: "FolderContext", logged: Logged) -> None:
    """The `message_logged` event, emitted only once the row is committed (issue 11)."""
    if logged.duplicate:
        log.info("message_already_logged", mailbox=ctx.mailbox, folder=ctx.folder, uid=logged.uid,
                 message_id=logged.message_id)
        return
    log.info(
        "message_logged", mailbox=ctx.mailbox, folder=ctx.folder, uid=logged.uid, message_id=logged.message_id,
        thread=logged.thread_id, classification=logged.category, reason=logged.reason,
        received_at=logged.received_at.isoformat() if logged.received_at else None,
    )


@dataclass
class _Recorded:
    """One message of a batch between recording and the batch's single flush."""

    fetched: FetchedMessage
    parsed: ParsedMessage
    verdict: Verdict
    customer: Address | None  # where an ack would go
    authentication: Authentication  # of the author's domain, by a trusted receiving server
    row: dict[str, object]  # the values of its `messages` row
    thread: Thread | None
    new_thread: bool


def record_batch(session: Session, ctx: FolderContext, batch: list[FetchedMessage], now: datetime) -> list[Logged]:
    """Log a batch exactly once and update threads, with one flush and one INSERT for the batch.

    Messages are threaded in UID order, so a reply later in the batch finds the thread its
    original opened (through `recent`); acknowledgments are decided after the flush, when
    every new thread has its ticket number. The message rows are plain values inserted in
    one executemany at the end: nothing reads them back, and ORM objects cost more than
    the parse of a mail.
    """
    recent: dict[str, Thread] = {}
    with session.no_autoflush:
        parsed = [_parse(ctx, fetched) for fetched in batch]
        known = known_references(session, parsed)
        results = [_record(session, ctx, fetched, message, now, recent, known)
                   for fetched, message in zip(batch, parsed, strict=True)]
    session.flush()
    ledger = _ack_ledger(ctx, results, now)
    with session.no_autoflush:  # the ack decisions only read the outbox, which inserts directly
        logged = [item if isinstance(item, Logged) else _finish(session, ctx, item, now, ledger) for item in results]
    rows = [item.row for item in results if isinstance(item, _Recorded)]
    if rows:
        session.execute(insert(Message.__table__), rows)
    return logged


def _ack_ledger(ctx: FolderContext, results: list["_Recorded | Logged"], now: datetime) -> AckLedger | None:
    # The outbox facts once per batch, for the customers whose new threads may be acknowledged.
    if ctx.acknowledger is None:
        return None
    customers = [item.customer for item in results
                 if isinstance(item, _Recorded) and item.customer and item.new_thread and item.verdict.is_customer]
    return ctx.acknowledger.ledger(now, customers)


def record_message(session: Session, ctx: FolderContext, fetched: FetchedMessage, now: datetime) -> Logged:
    """Log one message exactly once and update its thread."""
    return record_batch(session, ctx, [fetched], now)[0]


def _parse(ctx: FolderContext, fetched: FetchedMessage) -> ParsedMessage:
    parsed = parse_message(fetched.header, fetched.body_prefix, origin=f"{ctx.uidvalidity}.{fetched.uid}",
                           header_cut=fetched.header_cut)
    if parsed.header_truncated:
        log.warning("header_truncated", mailbox=ctx.mailbox, folder=ctx.folder, uid=fetched.uid, size=fetched.size)
    return parsed


def _record(session: Session, ctx: FolderContext, fetched: FetchedMessage, parsed: ParsedMessage, now: datetime,
            recent: dict[str, Thread], known: KnownReferences) -> "_Recorded | Logged":
    received_at = fetched.received_at or now
    message_id = parsed.message_id[:MAX_STORED_ID]
    # Only a resync or a retry can meet a message already logged; normally the unique keys guard.
    seen = _already_logged(session, ctx, parsed, message_id, received_at) if ctx.careful else None
    if seen is not None:
        # The same mail under a new UIDVALIDITY: remember where it lives now, log nothing. A second
        # delivery in the same UIDVALIDITY must not take over the row: its first UID still holds it.
        if seen.uidvalidity != ctx.uidvalidity:
            seen.uidvalidity, seen.uid = ctx.uidvalidity, fetched.uid
        return Logged(fetched.uid, message_id, seen.category, seen.thread_id, duplicate=True)
    verdict = classify(parsed, ctx.identity)
    authentication = author_authentication(parsed, ctx.identity)
    customer = reply_address(parsed, from_authenticated=authentication.passed)
    thread, new_thread = _thread_for(session, ctx, parsed, verdict, authentication, received_at, now, recent, known)
    if thread is not None and verdict.is_customer and ANSWERED_FLAG in fetched.flags:
        answer_by_flag(thread, received_at, ctx, now)  # answered from a mail client already
    row = _message_row(ctx, fetched, parsed, verdict, message_id, received_at, now)
    if thread is not None:
        recent[message_id] = thread
    return _Recorded(fetched, parsed, verdict, customer, authentication, row, thread, new_thread)


def _finish(session: Session, ctx: FolderContext, item: _Recorded, now: datetime,
            ledger: AckLedger | None = None) -> Logged:
    row = item.row
    row["thread_id"] = item.thread.id if item.thread is not None else None  # flushed: the ticket number is known
    if ctx.acknowledger is not None:
        decision = ctx.acknowledger.consider(
            session, thread=item.thread, new_thread=item.new_thread, parsed=item.parsed, verdict=item.verdict,
            recipient=item.customer, mail=Received(row["message_id"], row["received_at"]), now=now,
            authenticated=item.authentication.passed, reply_to_own=reply_to_own_address(item.parsed, ctx.identity),
            ledger=ledger)
        row["ack_outcome"], row["ack_reason"] = decision.outcome.value, decision.reason
    return Logged(row["uid"], row["message_id"], row["category"], row["thread_id"], ack_outcome=row["ack_outcome"],
                  reason=row["category_reason"], received_at=row["received_at"])


def record_unparsable(session: Session, ctx: FolderContext, fetched: FetchedMessage, now: datetime, error: str) -> Logged:
    """Log the bare facts of a message that could not be recorded normally."""
    message_id = f"<unrecorded.{ctx.uidvalidity}.{fetched.uid}@mailwatch.invalid>"
    received_at = fetched.received_at if fetched.received_at and fetched.received_at.tzinfo else now
    session.add(Message(
        mailbox=ctx.mailbox, folder=ctx.folder, uidvalidity=ctx.uidvalidity, uid=fetched.uid,
        message_id=message_id, message_id_synthesised=True, received_at=received_at,
        first_seen_at=now, size=fetched.size, category=Category.NO_SENDER.value,
        category_reason="not recorded", parse_error=error[:2000],
    ))
    log.error("message_quarantined", mailbox=ctx.mailbox, folder=ctx.folder, uid=fetched.uid, error=error)
    return Logged(fetched.uid, message_id, Category.NO_SENDER.value, None)


def _already_logged(session: Session, ctx: FolderContext, parsed: ParsedMessage, message_id: str,
                    received_at: datetime) -> Message | None:
    # A synthesised ID ends with the UID it was first seen at; after a UIDVALIDITY change only
    # its content stem is the same, and a row at this very UID is the same fetch retried.
    stem = synthesised_stem(message_id) if parsed.message_id_synthesised else None
    same_id = Message.message_id.startswith(stem, autoescape=True) if stem else Message.message_id == message_id
    return session.scalars(
        select(Message).where(
            Message.mailbox == ctx.mailbox, Message.folder == ctx.folder, same_id, Message.received_at == received_at,
        ).order_by((Message.message_id == message_id).desc()).limit(1)
    ).first()


def _thread_for(
    session: Session, ctx: FolderContext, parsed: ParsedMessage, verdict: Verdict,
    authentication: Authentication, received_at: datetime, now: datetime, recent: dict[str, Thread],
    known: KnownReferences,
) -> tuple[Thread | None, bool]:
    """The message's thread (None for machines that join none), and whether it is new."""
    if verdict.category is Category.SPOOFED:
        return None, False  # the From's own domain disowns it: it may neither open nor join a ticket
    writer = author(parsed) if verdict.is_customer and not ctx.sent_folder else None
    thread = find_thread(session, parsed, ctx.ticket_tag, known, customer=writer.address if writer else None,
                         recent=recent, by_tag=_may_join_by_tag(ctx, writer, authentication))
    new = False
    if thread is None:
        # Only a customer opens a ticket: a bounce or a newsletter must never escalate.
        if writer is None:
            return None, False
        thread, new = open_thread(session, ctx.mailbox, parsed, writer, received_at, ctx.policy, now), True
        if ctx.first_sync and ctx.backlog_age is not None and now - received_at > ctx.backlog_age:
            # Installed on a full inbox: show old conversations, but page nobody about them.
            skip_escalations(thread, ctx.policy)
    if not new and known.has_copy(thread, parsed.message_id):
        return thread, False  # the same mail in another folder (a Cc'd reply, its Sent copy): counted once
    sender = parsed.from_[0].address.lower() if parsed.from_ else None
    apply_message(thread, verdict, sender, received_at, ctx.policy, in_sent_folder=ctx.sent_folder,
                  staff_authenticated=None if ctx.sent_folder else staff_answer(parsed, verdict, ctx.identity))
    return thread, new


def _may_join_by_tag(ctx: FolderContext, writer: Address | None, authentication: Authentication) -> bool:
    # Ticket numbers are guessable: once From can be authenticated, a customer's tag counts
    # only with an authenticated From (anyone can write the customer's address).
    return writer is None or not ctx.identity.authserv_ids or authentication.passed


def _addresses(addresses: tuple[Address, ...]) -> str:
    return ", ".join(address.formatted() for address in addresses)


def _message_row(
    ctx: FolderContext, fetched: FetchedMessage, parsed: ParsedMessage, verdict: Verdict, message_id: str,
    received_at: datetime, now: datetime,
) -> dict[str, object]:
    """The `messages` row's values; thread and ack outcome are filled in once they are known."""
    first_from = parsed.from_[0] if parsed.from_ else None
    return {
        "mailbox": ctx.mailbox, "folder": ctx.folder, "uidvalidity": ctx.uidvalidity, "uid": fetched.uid,
        "message_id": message_id, "message_id_synthesised": parsed.message_id_synthesised,
        "from_address": first_from.address.lower() if first_from else None,
        "from_name": first_from.name if first_from else "",
        "from_all": _addresses(parsed.from_), "reply_to": _addresses(parsed.reply_to),
        "to_addrs": _addresses(parsed.to), "cc_addrs": _addresses(parsed.cc),
        "subject": parsed.subject, "date_header": parsed.date_header, "date_at": parsed.date,
        "received_at": received_at, "first_seen_at": now, "size": fetched.size,
        "in_reply_to": parsed.in_reply_to, "references": " ".join(parsed.references),
        "flags": " ".join(fetched.flags), "snippet": parsed.snippet,
        "category": verdict.category.value, "category_reason": verdict.reason,
        "parse_error": parsed.parse_error, "header_truncated": parsed.header_truncated,
        "thread_id": None, "ack_outcome": None, "ack_reason": None,
    }


def record_flags(session: Session, ctx: FolderContext, flags: dict[int, tuple[str, ...]], now: datetime) -> list[int]:
    """Store changed flags; a customer message flagged \\Answered answers its thread."""
    if not flags:
        return []
    rows = session.scalars(
        select(Message).where(
            Message.mailbox == ctx.mailbox, Message.folder == ctx.folder,
            Message.uidvalidity == ctx.uidvalidity, Message.uid.in_(list(flags)),
        )
    ).all()
    answered: list[int] = []
    for row in rows:
        row.flags = " ".join(flags[row.uid])
        if ANSWERED_FLAG in flags[row.uid] and row.thread_id is not None and row.category == Category.CUSTOMER.value:
            thread = session.get(Thread, row.thread_id)
            if answer_by_flag(thread, row.received_at, ctx, now):
                answered.append(thread.id)
    return answered


def answer_by_flag(thread: Thread, flagged_received_at: datetime, ctx: FolderContext, now: datetime) -> bool:
    """\\Answered on a customer's message answers the thread up to that message, as first seen now."""
    answered = mark_answered(thread, now, via=AnsweredVia.FLAG, by=None, policy=ctx.policy,
                             covers_until=flagged_received_at, how=IMAP_LOGIN)
    if answered:
        log.info("thread_answered", thread=thread.id, via=AnsweredVia.FLAG.value, mailbox=ctx.mailbox)
    return answered
