"""Joining messages into conversations and keeping each thread's clock."""

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailwatch.db.models import Message, OutboxMail, Thread
from mailwatch.mail.parse import Address, ParsedMessage
from mailwatch.mail.rules import Category, Verdict
from mailwatch.sla import ClockPolicy, first_deadline, next_escalation_at, reopened_deadline

OPEN, ANSWERED, CLOSED = "open", "answered", "closed"
REFERENCES_LOOKED_UP = 50  # a References header can be long; the newest ids matter most
# Who answers a thread by writing into it. The shared address itself counts: agents
# often reply from it with the mailbox in Cc (mailwatch's own mail is OWN_MESSAGE).
STAFF_RESPONSES = {Category.STAFF: "staff-address", Category.OWN_ADDRESS: "own-address"}
# In the Sent folder, any of these is a person's reply (not an auto-reply or our own ack).
SENT_RESPONSES = {Category.STAFF, Category.OWN_ADDRESS, Category.CUSTOMER}


def ticket_pattern(prefix: str) -> re.Pattern[str]:
    """The subject tag `[#1042]` for a ticket prefix such as "#"."""
    return re.compile(r"\[" + re.escape(prefix) + r"(\d{1,9})\]")


def find_thread(
    session: Session, msg: ParsedMessage, tag: re.Pattern[str], customer: str | None = None,
    recent: dict[str, Thread] | None = None,
) -> Thread | None:
    """The thread a message belongs to: by In-Reply-To/References, then by ticket tag.

    `customer`: the sender's address when a customer wrote. Ticket numbers are easy to
    guess, so a tag joins a customer only to their own thread; anyone else with a
    copied tag gets a ticket of their own. `recent`: threads of messages recorded
    earlier in the same, not yet flushed, batch.
    """
    thread = _thread_by_reference(session, msg, recent or {})
    if thread is not None:
        return thread
    thread = _thread_by_tag(session, msg.subject, tag)
    if thread is not None and customer is not None and thread.customer_address != customer.lower():
        return None
    return thread


def _thread_by_reference(session: Session, msg: ParsedMessage, recent: dict[str, Thread]) -> Thread | None:
    ids = list(dict.fromkeys([*([msg.in_reply_to] if msg.in_reply_to else []), *reversed(msg.references)]))
    if not ids:
        return None
    for message_id in ids:
        if message_id in recent:
            return recent[message_id]
    ids = ids[:REFERENCES_LOOKED_UP]
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
        mailbox=mailbox,
        subject=msg.subject,
        customer_address=customer.address.lower(),
        customer_name=customer.name,
        status=OPEN,
        first_received_at=received_at,
        last_customer_at=received_at,
        clock=1,
        clock_started_at=received_at,
        deadline_at=first_deadline(received_at, policy),
        escalation_level=0,
        next_escalation_at=next_escalation_at(received_at, policy.steps, 0),
        message_count=0,
        created_at=now,
    )
    session.add(thread)  # the batch's flush assigns the ticket number
    return thread


def skip_escalations(thread: Thread, policy: ClockPolicy) -> None:
    """Count every step of the current clock as sent: for mail found on a first start."""
    thread.escalation_level = len(policy.steps)
    thread.next_escalation_at = None


def apply_message(
    thread: Thread, verdict: Verdict, sender: str | None, received_at: datetime, policy: ClockPolicy,
    in_sent_folder: bool = False,
) -> None:
    """Update a thread's counts and clock for one more message in it."""
    thread.message_count += 1
    if in_sent_folder:
        # Whatever its From says, a person's mail in our Sent folder is our answer.
        if verdict.category in SENT_RESPONSES:
            mark_answered(thread, received_at, via="sent-folder", by=sender, policy=policy)
    elif verdict.is_customer:
        customer_wrote(thread, received_at, policy)
    elif verdict.category in STAFF_RESPONSES:
        mark_answered(thread, received_at, via=STAFF_RESPONSES[verdict.category], by=sender, policy=policy)


def customer_wrote(thread: Thread, received_at: datetime, policy: ClockPolicy) -> None:
    """A customer message: reopens an answered or closed thread when a next deadline is set."""
    thread.last_customer_at = max(thread.last_customer_at, received_at)
    if thread.status == OPEN:
        return
    deadline = reopened_deadline(received_at, policy)
    if deadline is None:
        return
    _start_new_clock(thread, received_at, deadline, policy)


def mark_answered(
    thread: Thread, at: datetime, via: str, by: str | None, policy: ClockPolicy, covers_until: datetime | None = None,
) -> bool:
    """Stop the clock of an open thread; False when there was nothing to stop.

    `covers_until`: the newest customer message this answer can have seen (the staff
    message's own time, or the flagged message's). A customer message after it still
    waits, so the thread reopens on a new clock from that message.
    """
    if thread.status != OPEN:
        return False
    thread.status = ANSWERED
    thread.answered_at = at
    thread.answered_via = via
    thread.answered_by = by
    thread.deadline_at = None
    thread.next_escalation_at = None
    seen_until = covers_until or at
    if thread.last_customer_at > seen_until:
        customer_wrote(thread, thread.last_customer_at, policy)
    return True


def close_thread(thread: Thread) -> None:
    """Closed threads have no clock: nothing more is expected of staff."""
    thread.status = CLOSED
    thread.deadline_at = None
    thread.next_escalation_at = None


def reopen_thread(thread: Thread, now: datetime, policy: ClockPolicy) -> None:
    """Start a new clock from `now`, as if the customer had just written again."""
    _start_new_clock(thread, now, reopened_deadline(now, policy) or first_deadline(now, policy), policy)


def _start_new_clock(thread: Thread, started_at: datetime, deadline: datetime, policy: ClockPolicy) -> None:
    # A new clock number lets every escalation step fire once more, exactly once.
    thread.status = OPEN
    thread.clock += 1
    thread.clock_started_at = started_at
    thread.deadline_at = deadline
    thread.escalation_level = 0
    thread.next_escalation_at = next_escalation_at(started_at, policy.steps, 0)
