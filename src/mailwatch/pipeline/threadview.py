"""The read side of the action page: one thread as a person sees it, oldest message first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailwatch.businesstime import time_left
from mailwatch.db.models import Escalation, Message, Thread
from mailwatch.db.queries import actions_by_thread
from mailwatch.mail.rules import Category
from mailwatch.policies import Policies

MESSAGES_SHOWN = 50  # a page on a phone; the newest matter most


class MessageView(NamedTuple):
    who: str
    when: datetime  # UTC
    snippet: str  # plain text: the page escapes it, never renders the customer's HTML
    direction: str  # "customer", "staff", "ack" (our own mail) or "other" (auto-replies, bounces, …)


class ActionView(NamedTuple):
    action: str
    actor: str
    at: datetime
    note: str | None
    until: datetime | None


class Customer(NamedTuple):
    name: str
    address: str


@dataclass(frozen=True)
class ThreadView:
    ticket: int
    subject: str
    customer: Customer
    mailbox: str
    status: str
    clock: int  # the running clock: a link for an earlier one is stale
    deadline_at: datetime | None
    tz: tzinfo
    time_left: timedelta | None  # negative once overdue; None without a running clock
    taken_by: str | None  # only for the running clock
    taken_at: datetime | None
    snoozed_until: datetime | None
    escalations: tuple[tuple[int, datetime], ...]  # (step, sent at) of the running clock
    messages: tuple[MessageView, ...]
    actions: tuple[ActionView, ...]


_DIRECTIONS = {Category.CUSTOMER: "customer", Category.STAFF: "staff", Category.OWN_ADDRESS: "staff",
               Category.OWN_MESSAGE: "ack"}


def thread_view(session: Session, policies: Policies, ticket: int, now: datetime) -> ThreadView | None:
    """Everything the page shows about `ticket`, or None when there is no such thread."""
    thread = session.get(Thread, ticket)
    if thread is None:
        return None
    taken = thread.taken_now()
    return ThreadView(
        ticket=thread.id, subject=thread.subject, customer=Customer(thread.customer_name, thread.customer_address),
        mailbox=thread.mailbox, status=str(thread.status),
        clock=thread.clock, deadline_at=thread.deadline_at, tz=_zone(policies, thread.mailbox),
        time_left=_time_left(policies, thread, now),
        taken_by=taken[0] if taken else None, taken_at=taken[1] if taken else None,
        snoozed_until=thread.snoozed_now(),
        escalations=_escalations(session, thread), messages=_messages(session, thread.id),
        actions=actions_of(session, thread.id),
    )


def _time_left(policies: Policies, thread: Thread, now: datetime) -> timedelta | None:
    # As the digest counts it: business time for a mailbox on a calendar.
    if thread.deadline_at is None:
        return None
    return time_left(now, thread.deadline_at, policies.for_mailbox(thread.mailbox).clock.calendar)


def _zone(policies: Policies, mailbox: str) -> tzinfo:
    mine = policies.for_mailbox(mailbox)
    return mine.escalation.tz or mine.branding.tz  # as the digest: the calendar's zone, else the service's


def _escalations(session: Session, thread: Thread) -> tuple[tuple[int, datetime], ...]:
    rows = session.execute(select(Escalation.step, Escalation.created_at).where(
        Escalation.thread_id == thread.id, Escalation.clock == thread.clock).order_by(Escalation.step))
    return tuple((step, at) for step, at in rows)


def _messages(session: Session, thread_id: int) -> tuple[MessageView, ...]:
    rows = session.scalars(select(Message).where(Message.thread_id == thread_id)
                           .order_by(Message.received_at.desc(), Message.id.desc()).limit(MESSAGES_SHOWN)).all()
    return tuple(MessageView(who=_who(row), when=row.received_at, snippet=row.snippet,
                             direction=_DIRECTIONS.get(row.category, "other")) for row in reversed(rows))


def _who(row: Message) -> str:
    return named(row.from_name, row.from_address or "(unknown sender)")


def named(name: str, address: str) -> str:
    """'Name <address>' for people to read, or the bare address when there is no name."""
    return f"{name} <{address}>" if name else address


def actions_of(session: Session, thread_id: int) -> tuple[ActionView, ...]:
    """The thread's recorded actions, oldest first."""
    rows = actions_by_thread(session, thread_id).get(thread_id, [])
    return tuple(ActionView(row.action, row.actor, row.at, row.note, row.until) for row in rows)
