"""The escalation sweep: threads whose next step fell due become digest emails.

One sweep reads only the threads whose stored `next_escalation_at` has passed (an
index range), records each (thread, clock, step) once — a unique key, so a restart or
a second instance can never send a step twice — and queues one digest per recipient.
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailwatch.db.models import Escalation, Message, OutboxKind, ServiceState, Thread
from mailwatch.durations import format_duration, rounded
from mailwatch.mail.rules import Category
from mailwatch.pipeline.outbox import enqueue
from mailwatch.policies import Branding, EscalationPolicy
from mailwatch.sla import ClockPolicy, ThreadStatus, due_steps, next_escalation_at
from mailwatch.templates import Templates, build_email, our_message_id

log = structlog.get_logger(__name__)

SWEEP_LIMIT = 500  # threads per sweep; a larger backlog is finished by the next sweeps
DIGEST_QUOTE_CHARS = 400
STEPS_KEY = "escalation_steps"  # service_state key: the steps next_escalation_at was computed for


@dataclass(frozen=True)
class DueItem:
    thread: Thread
    step: int


@dataclass
class SweepReport:
    escalated: list[DueItem] = field(default_factory=list)
    emails: int = 0


def steps_fingerprint(policy: ClockPolicy) -> str:
    return ",".join(str(int(after.total_seconds())) for after in policy.steps)


def realign_schedule(session: Session, policy: ClockPolicy) -> int:
    """Recompute open threads' next step time after the configured steps changed."""
    state = session.get(ServiceState, STEPS_KEY)
    if state is not None and state.value == steps_fingerprint(policy):
        return 0
    threads = session.scalars(select(Thread).where(Thread.status == ThreadStatus.OPEN)).all()
    for thread in threads:
        thread.next_escalation_at = next_escalation_at(thread.clock_started_at, policy.steps, thread.escalation_level)
    session.merge(ServiceState(key=STEPS_KEY, value=steps_fingerprint(policy)))
    log.info("escalation_schedule_realigned", threads=len(threads),
             steps=[format_duration(after) for after in policy.steps])
    return len(threads)


class Escalator:
    """Finds due steps and queues the escalation digests."""

    def __init__(self, policy: EscalationPolicy, branding: Branding, templates: Templates) -> None:
        self.policy = policy
        self.branding = branding
        self.templates = templates

    def sweep(self, session: Session, now: datetime) -> SweepReport:
        """Escalate every thread whose next step is due; queue one digest per recipient."""
        report = SweepReport()
        threads = session.scalars(
            select(Thread)
            .where(Thread.status == ThreadStatus.OPEN, Thread.next_escalation_at <= now)
            .order_by(Thread.next_escalation_at)
            .limit(SWEEP_LIMIT)
            .with_for_update(skip_locked=True)  # another instance's sweep takes the others
        ).all()
        for thread in threads:
            report.escalated.extend(self._advance(session, thread, now))
        session.flush()  # a step another instance recorded first fails here: roll back, no mail
        # Each thread's facts once, however many recipients' digests list it.
        quotes = latest_customer_words(session, {item.thread.id for item in report.escalated})
        contexts = {id(item): self.item_context(item, quotes.get(item.thread.id, ""), now) for item in report.escalated}
        for recipient, items in self._by_recipient(report.escalated).items():
            self._queue_digest(session, recipient, items, contexts, now)
            report.emails += 1
        return report

    def _advance(self, session: Session, thread: Thread, now: datetime) -> list[DueItem]:
        steps = due_steps(thread.clock_started_at, now, self.policy.clock.steps, thread.escalation_level)
        for step in steps:
            session.add(Escalation(thread_id=thread.id, clock=thread.clock, step=step, created_at=now))
            log.warning("thread_escalated", thread=thread.id, step=step, clock=thread.clock,
                        deadline_at=thread.deadline_at.isoformat() if thread.deadline_at else None)
        if steps:
            thread.escalation_level = steps[-1]
        thread.next_escalation_at = next_escalation_at(
            thread.clock_started_at, self.policy.clock.steps, thread.escalation_level)
        return [DueItem(thread, step) for step in steps]

    def _by_recipient(self, due: list[DueItem]) -> dict[str, list[DueItem]]:
        grouped: dict[str, list[DueItem]] = defaultdict(list)
        for item in due:
            for recipient in self.policy.recipients_of(item.step):
                grouped[recipient.lower()].append(item)
        return grouped

    def _queue_digest(self, session: Session, recipient: str, items: list[DueItem], contexts: dict[int, dict],
                      now: datetime) -> None:
        branding = self.branding
        items = sorted(items, key=lambda item: (item.thread.deadline_at or now, item.thread.id))
        context = self.context([contexts[id(item)] for item in items], now)
        first = items[0].thread.id
        message = build_email(
            self.templates.render_mail("escalation", context), sender=branding.sender, to=recipient,
            message_id=our_message_id(first, now, branding.sender_domain), date=format_datetime(now),
            extra_headers={"Auto-Submitted": "auto-generated", "X-Mailwatch-Loop": branding.sender_address,
                           "X-Priority": "1" if context["overdue_count"] else "2"},
        )
        enqueue(session, kind=OutboxKind.ESCALATION, dedupe_key=digest_key(recipient, items),
                message=message, recipient=recipient, envelope_from=branding.sender_address, now=now,
                thread_id=first if len(items) == 1 else None)
        log.info("escalation_queued", recipient=recipient, threads=[item.thread.id for item in items])

    def item_context(self, item: DueItem, quote: str, now: datetime) -> dict:
        """What the templates show about one escalated thread."""
        thread, branding = item.thread, self.branding
        left = (thread.deadline_at - now) if thread.deadline_at else timedelta(0)
        return {
            "ticket": branding.ticket(thread.id),
            "ticket_number": thread.id,
            "mailbox": thread.mailbox,
            "customer": {"name": thread.customer_name, "address": thread.customer_address},
            "subject": thread.subject,
            "received_at": branding.local_time(thread.clock_started_at),
            "deadline": branding.local_time(thread.deadline_at) if thread.deadline_at else "",
            "overdue": left < timedelta(0),
            "left": rounded(left),
            "step": item.step,
            "steps": len(self.policy.clock.steps),
            "messages": thread.message_count,
            "quote": quote[:DIGEST_QUOTE_CHARS],
            "answer_command": f"mailwatch thread answered {thread.id}",
        }

    def context(self, items: list[dict], now: datetime) -> dict:
        """The digest: most urgent first, with counts for the subject."""
        return {
            **self.branding.context(),
            "items": items,
            "count": len(items),
            "overdue_count": sum(1 for item in items if item["overdue"]),
            "most_urgent": items[0],
            "generated_at": self.branding.local_time(now),
        }


def digest_key(recipient: str, items: list[DueItem]) -> str:
    """The outbox key of one digest: the same escalated steps to the same person are one mail."""
    steps = sorted(f"{item.thread.id}.{item.thread.clock}.{item.step}" for item in items)
    digest = hashlib.sha256(f"{recipient}|{','.join(steps)}".encode()).hexdigest()[:32]
    return f"escalation:{steps[0]}:{digest}"  # readable enough to find, short enough for the column


def latest_customer_words(session: Session, thread_ids: set[int]) -> dict[int, str]:
    """The snippet of each thread's newest customer message, in one query for all of them."""
    if not thread_ids:
        return {}
    rows = session.execute(
        select(Message.thread_id, Message.snippet)
        .where(Message.thread_id.in_(thread_ids), Message.category == Category.CUSTOMER.value)
        .order_by(Message.thread_id, Message.received_at.desc(), Message.id.desc())
    )
    latest: dict[int, str] = {}
    for thread_id, snippet in rows:
        latest.setdefault(thread_id, snippet)
    return latest


def sample_escalation_context(escalator: Escalator, mailbox: str, now: datetime) -> dict:
    """A realistic digest, rendered by the real item context, for test-rendering templates at `check`."""
    first_response = escalator.policy.clock.first_response
    thread = Thread(
        id=1042, mailbox=mailbox, customer_name="Renée Lefèvre", customer_address="renee@example.com",
        subject="Réclamation: order 1234 arrived broken", clock=1, clock_started_at=now - first_response,
        deadline_at=now - timedelta(minutes=5), message_count=2,
    )
    item = escalator.item_context(DueItem(thread, 1), "Hello, my order arrived broken.", now)
    return escalator.context([item], now)
