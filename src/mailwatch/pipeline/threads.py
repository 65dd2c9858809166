"""Joining messages into conversations: by reference, then by ticket tag, else a new ticket.

What a message does to its thread's clock is `sla`'s business; this module only finds
(or opens) the thread.
"""

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailwatch.db.models import Message, OutboxMail, Thread
from mailwatch.mail.parse import Address, ParsedMessage
from mailwatch.sla import ClockPolicy, start_first_clock

REFERENCES_LOOKED_UP = 50  # a References header can be long; the newest ids matter most


def ticket_pattern(prefix: str) -> re.Pattern[str]:
    """The subject tag `[#1042]` for a ticket prefix such as "#"."""
    return re.compile(r"\[" + re.escape(prefix) + r"(\d{1,9})\]")


def find_thread(
    session: Session, msg: ParsedMessage, tag: re.Pattern[str], customer: str | None = None,
    recent: dict[str, Thread] | None = None, by_tag: bool = True,
) -> Thread | None:
    """The thread a message belongs to: by In-Reply-To/References, then by ticket tag.

    `customer`: the author's (From) address when a customer wrote; Reply-To never counts.
    Ticket numbers are easy to guess, so a tag joins a customer only to their own
    thread; anyone else with a copied tag gets a ticket of their own. `by_tag`: False
    when the tag must not count at all (an unauthenticated customer From). `recent`:
    threads of messages recorded earlier in the same, not yet flushed, batch.
    """
    thread = _thread_by_reference(session, msg, recent or {})
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


def _thread_by_reference(session: Session, msg: ParsedMessage, recent: dict[str, Thread]) -> Thread | None:
    ids = reference_keys(msg)
    if not ids:
        return None
    for message_id in ids:
        if message_id in recent:
            return recent[message_id]
    thread = session.scalars(
        select(Thread).join(Message, Message.thread_id == Thread.id)
        .where(Message.message_id.in_(ids))
        .order_by(Message.received_at.desc())
        .limit(1)
    ).first()
    if thread is None:  # a reply to our acknowledgment or escalation
        thread = session.scalars(
            select(Thread).join(OutboxMail, OutboxMail.thread_id == Thread.id).where(OutboxMail.message_id.in_(ids)).limit(1)
        ).first()
    return thread


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
