"""Joining messages into conversations: by reference, then by ticket tag, else a new ticket.

What a message does to its thread's clock is `sla`'s business; this module only finds
(or opens) the thread.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailwatch.db.models import Message, OutboxMail, Thread
from mailwatch.mail.parse import Address, ParsedMessage
from mailwatch.sla import ClockPolicy, start_first_clock

MAX_STORED_ID = Message.__table__.c.message_id.type.length  # longer ids are stored cut; real ones are far shorter
REFERENCES_LOOKED_UP = 50  # a References header can be long; the newest ids matter most


def ticket_pattern(prefix: str) -> re.Pattern[str]:
    """The subject tag `[#1042]` for a ticket prefix such as "#"."""
    return re.compile(r"\[" + re.escape(prefix) + r"(\d{1,9})\]")


@dataclass(frozen=True)
class KnownReferences:
    """What a batch's messages point to, and which threads hold a copy of them, in three queries per batch."""

    logged: dict[str, tuple[datetime, int]]  # a logged Message-ID → (received_at, thread) of its newest row
    ours: dict[str, int]  # one of our acknowledgments or escalations → its thread
    threads: dict[int, Thread]  # the threads of both, loaded at once
    copies: frozenset[tuple[int, str]]  # (thread, Message-ID) of the batch's own mail logged before

    def has_copy(self, thread: Thread, message_id: str) -> bool:
        """Whether `thread` holds a logged mail with this Message-ID (its copy in another folder)."""
        return (thread.id, message_id[:MAX_STORED_ID]) in self.copies


def known_references(session: Session, messages: Sequence[ParsedMessage]) -> KnownReferences:
    """The threads the messages' references lead to, and their copies logged before (per batch, not message)."""
    ids = {key for msg in messages for key in reference_keys(msg)}
    logged, copies = _logged_and_copies(session, ids, {msg.message_id[:MAX_STORED_ID] for msg in messages})
    ours = _our_mail(session, ids)
    wanted = {thread_id for _received_at, thread_id in logged.values()} | set(ours.values())
    threads = {thread.id: thread for thread in session.scalars(select(Thread).where(Thread.id.in_(wanted)))} \
        if wanted else {}
    return KnownReferences(logged, ours, threads, copies)


def _logged_and_copies(session: Session, ids: set[str], own: set[str]) \
        -> tuple[dict[str, tuple[datetime, int]], frozenset[tuple[int, str]]]:
    # One query for both: the newest logged row of each referenced id, and the threads
    # already holding one of the batch's own Message-IDs.
    logged: dict[str, tuple[datetime, int]] = {}
    copies: set[tuple[int, str]] = set()
    rows = session.execute(select(Message.message_id, Message.received_at, Message.thread_id)
                           .where(Message.message_id.in_(ids | own), Message.thread_id.is_not(None)))
    for message_id, received_at, thread_id in rows:
        if message_id in own:
            copies.add((thread_id, message_id))
        if message_id in ids and (message_id not in logged or received_at > logged[message_id][0]):
            logged[message_id] = (received_at, thread_id)
    return logged, frozenset(copies)


def _our_mail(session: Session, ids: set[str]) -> dict[str, int]:
    """Which of `ids` are our acknowledgments or escalations, and their threads."""
    if not ids:
        return {}
    return dict(session.execute(select(OutboxMail.message_id, OutboxMail.thread_id)
                                .where(OutboxMail.message_id.in_(ids), OutboxMail.thread_id.is_not(None))).all())


def find_thread(
    session: Session, msg: ParsedMessage, tag: re.Pattern[str], known: KnownReferences, customer: str | None = None,
    recent: dict[str, Thread] | None = None, by_tag: bool = True,
) -> Thread | None:
    """The thread a message belongs to: by In-Reply-To/References, then by ticket tag.

    `known`: what the batch's references lead to (`known_references`). `customer`: the
    author's (From) address when a customer wrote; Reply-To never counts. Ticket numbers
    are easy to guess, so a tag joins a customer only to their own thread; anyone else
    with a copied tag gets a ticket of their own. `by_tag`: False when the tag must not
    count at all (an unauthenticated customer From). `recent`: threads of messages
    recorded earlier in the same, not yet flushed, batch.
    """
    thread = _thread_by_reference(msg, known, recent or {})
    if thread is not None:
        return thread
    if not by_tag:
        return None
    thread = _thread_by_tag(session, msg.subject, tag)
    if thread is not None and customer is not None and thread.customer_address != customer.lower():
        return None
    return thread


def reference_keys(msg: ParsedMessage) -> list[str]:
    """The Message-IDs a message threads by, most telling first: In-Reply-To, then the newest References."""
    ids = dict.fromkeys([*([msg.in_reply_to] if msg.in_reply_to else []), *reversed(msg.references)])
    return list(ids)[:REFERENCES_LOOKED_UP]


def _thread_by_reference(msg: ParsedMessage, known: KnownReferences, recent: dict[str, Thread]) -> Thread | None:
    ids = reference_keys(msg)
    for message_id in ids:
        if message_id in recent:
            return recent[message_id]
    # The thread of the newest logged message referred to; else a reply to our ack or escalation.
    logged = [known.logged[message_id] for message_id in ids if message_id in known.logged]
    if logged:
        return known.threads[max(logged, key=lambda found: found[0])[1]]
    ours = next((known.ours[message_id] for message_id in ids if message_id in known.ours), None)
    return known.threads[ours] if ours is not None else None


def _thread_by_tag(session: Session, subject: str, tag: re.Pattern[str]) -> Thread | None:
    match = tag.search(subject)
    return session.get(Thread, int(match.group(1))) if match else None


def open_thread(
    session: Session, mailbox: str, msg: ParsedMessage, customer: Address, received_at: datetime,
    policy: ClockPolicy, now: datetime,
) -> Thread:
    """Start a new conversation (and ticket) for a customer's first message."""
    thread = Thread(
        mailbox=mailbox, subject=msg.subject, customer_address=customer.address.lower(),
        customer_name=customer.name, first_received_at=received_at, message_count=0, created_at=now,
    )
    start_first_clock(thread, received_at, policy)
    session.add(thread)  # the batch's flush assigns the ticket number
    return thread
