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

from mailwatch.config.models import WebSettings
from mailwatch.db.models import Escalation, Message, OutboxKind, ServiceState, Thread
from mailwatch.durations import format_duration, rounded
from mailwatch.links import action_link
from mailwatch.mail.rules import Category
from mailwatch.pipeline.outbox import enqueue
from mailwatch.businesstime import Calendar, time_left
from mailwatch.policies import Branding, EscalationPolicy
from mailwatch.sla import ClockPolicy, ThreadStatus, clock_deadline, human_time, next_step_at, thread_due_steps
from mailwatch.templates import Templates, build_email, our_message_id

log = structlog.get_logger(__name__)

SWEEP_LIMIT = 500  # threads per sweep; a larger backlog is finished by the next sweeps
DIGEST_QUOTE_CHARS = 400
STEPS_KEY = "escalation_steps"  # service_state key: the clock policies stored times were computed for


@dataclass(frozen=True)
class DueItem:
    thread: Thread
    step: int


@dataclass
class SweepReport:
    escalated: list[DueItem] = field(default_factory=list)
    emails: int = 0
    digests: dict[str, list[int]] = field(default_factory=dict)  # recipient: the threads its digest lists


def announce_sweep(report: SweepReport) -> None:
    """The sweep's events, logged once its transaction is committed: only what happened is said."""
    for item in report.escalated:
        thread = item.thread
        log.warning("thread_escalated", thread=thread.id, step=item.step, clock=thread.clock,
                    deadline_at=thread.deadline_at.isoformat() if thread.deadline_at else None)
    for recipient, threads in report.digests.items():
        log.info("escalation_queued", recipient=recipient, threads=threads)


def steps_fingerprint(policy: ClockPolicy) -> str:
    """The steps, clock and calendar of one clock policy, as text that changes when they do."""
    steps = ",".join(str(int(after.total_seconds())) for after in policy.steps)
    holds = ",".join(calendar_fingerprint(hold) for hold in policy.holds)
    return f"{steps}|{policy.first_response}|{policy.next_response}|{calendar_fingerprint(policy.calendar)}|{holds}"


def calendar_fingerprint(calendar: Calendar | None) -> str:
    # Sorted: a set's order of dates differs between processes, and must not look like a change.
    if calendar is None:
        return "-"
    return f"{calendar.name}:{calendar.tz.key}:{calendar.week}:{','.join(map(str, sorted(calendar.closed)))}"


def schedule_fingerprint(policy: EscalationPolicy) -> str:
    """One digest of every mailbox's clock policy: stored, and compared at each start or reload."""
    parts = [f"*={steps_fingerprint(policy.clock)}"]
    parts += [f"{name}={steps_fingerprint(own.clock)}" for name, own in sorted(policy.mailboxes.items())]
    return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def realign_schedule(session: Session, policy: EscalationPolicy) -> int:
    """Recompute open threads' deadline and next step time after a step, calendar or mailbox policy changed."""
    fingerprint = schedule_fingerprint(policy)
    state = session.get(ServiceState, STEPS_KEY)
    if state is not None and state.value == fingerprint:
        return 0
    threads = session.scalars(select(Thread).where(Thread.status == ThreadStatus.OPEN)).all()
    for thread in threads:
        clock = policy.for_mailbox(thread.mailbox).clock
        thread.deadline_at = clock_deadline(thread, clock)
        thread.escalation_level = min(thread.escalation_level, len(clock.steps))
        thread.next_escalation_at = next_step_at(thread, clock)
    session.merge(ServiceState(key=STEPS_KEY, value=fingerprint))
    # Steps as the configuration writes them ("20h"); a mailbox's own only where they differ.
    mailbox_steps = {name: [format_duration(after) for after in own.clock.steps]
                     for name, own in sorted(policy.mailboxes.items()) if own.clock.steps != policy.clock.steps}
    log.info("escalation_schedule_realigned", threads=len(threads), fingerprint=fingerprint,
             steps=[format_duration(after) for after in policy.clock.steps], **(
                 {"mailbox_steps": mailbox_steps} if mailbox_steps else {}))
    return len(threads)


class Escalator:
    """Finds due steps and queues the escalation digests."""

    def __init__(self, policy: EscalationPolicy, branding: Branding, templates: Templates,
                 web: WebSettings | None = None) -> None:
        self.policy = policy
        self.branding = branding
        self.templates = templates
        self.web = web  # None: no [web], so no links in the digest

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
            report.digests[recipient] = [item.thread.id for item in items]
            report.emails += 1
        return report

    def _advance(self, session: Session, thread: Thread, now: datetime) -> list[DueItem]:
        clock = self.policy.for_mailbox(thread.mailbox).clock
        steps = thread_due_steps(thread, now, clock)
        for step in steps:
            session.add(Escalation(thread_id=thread.id, clock=thread.clock, step=step, created_at=now))
        if steps:
            thread.escalation_level = steps[-1]
        thread.next_escalation_at = next_step_at(thread, clock)
        return [DueItem(thread, step) for step in steps]

    def _by_recipient(self, due: list[DueItem]) -> dict[str, list[DueItem]]:
        grouped: dict[str, list[DueItem]] = defaultdict(list)
        for item in due:
            for recipient in self.policy.for_mailbox(item.thread.mailbox).recipients_of(item.step):
                grouped[recipient.lower()].append(item)
        return grouped

    def _queue_digest(self, session: Session, recipient: str, items: list[DueItem], contexts: dict[int, dict],
                      now: datetime) -> None:
        branding = self.branding
        items = sorted(items, key=lambda item: (item.thread.deadline_at or now, item.thread.id))
        context = self.context([self._with_link(contexts[id(item)], item, recipient, now) for item in items], now)
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

    def _with_link(self, context: dict, item: DueItem, recipient: str, now: datetime) -> dict:
        # A link is the recipient's own capability: the same item gets a different one per person.
        if self.web is None:
            return context
        return {**context, "link": action_link(self.web, item.thread.id, item.thread.clock, recipient, now)}

    def item_context(self, item: DueItem, quote: str, now: datetime) -> dict:
        """What the templates show about one escalated thread."""
        thread, branding = item.thread, self.branding
        policy = self.policy.for_mailbox(thread.mailbox)
        tz = policy.tz or branding.tz  # the mailbox's local time: its calendar's zone
        # Time left in the thread's own clock: business time when it runs on a calendar.
        left = time_left(now, thread.deadline_at, policy.clock.calendar) if thread.deadline_at else timedelta(0)
        taken, snoozed = thread.taken_now(), thread.snoozed_now()
        return {
            "ticket": branding.ticket(thread.id),
            "ticket_number": thread.id,
            "mailbox": thread.mailbox,
            "customer": {"name": thread.customer_name, "address": thread.customer_address},
            "subject": thread.subject,
            "received_at": human_time(thread.clock_started_at, tz),
            "deadline": human_time(thread.deadline_at, tz) if thread.deadline_at else "",
            "clock": policy.clock.label,
            "overdue": left < timedelta(0),
            "left": rounded(left),
            "step": item.step,
            "steps": len(policy.clock.steps),
            "messages": thread.message_count,
            "quote": quote[:DIGEST_QUOTE_CHARS],
            "answer_command": f"mailwatch thread answered {thread.id}",
            "taken_by": taken[0] if taken else "",
            "snoozed_until": human_time(snoozed, tz) if snoozed else "",
            "link": "",
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
    """The snippet of each thread's newest message by its own customer, in one query for all of them.

    Only the customer's words: anyone else who got into the thread (a reference, a copied
    tag) must not put text in front of the people who act on a digest.
    """
    if not thread_ids:
        return {}
    rows = session.execute(
        select(Message.thread_id, Message.snippet)
        .join(Thread, Thread.id == Message.thread_id)
        .where(Message.thread_id.in_(thread_ids), Message.category == Category.CUSTOMER.value,
               Message.from_address == Thread.customer_address)
        .order_by(Message.thread_id, Message.received_at.desc(), Message.id.desc())
    )
    latest: dict[int, str] = {}
    for thread_id, snippet in rows:
        latest.setdefault(thread_id, snippet)
    return latest


def sample_escalation_context(escalator: Escalator, mailbox: str, now: datetime) -> dict:
    """A realistic digest, rendered by the real item context, for test-rendering templates at `check`."""
    first_response = escalator.policy.for_mailbox(mailbox).clock.first_response
    thread = Thread(
        id=1042, mailbox=mailbox, customer_name="Renée Lefèvre", customer_address="renee@example.com",
        subject="Réclamation: order 1234 arrived broken", clock=1, clock_started_at=now - first_response,
        deadline_at=now - timedelta(minutes=5), message_count=2,
    )
    item = escalator.item_context(DueItem(thread, 1), "Hello, my order arrived broken.", now)
    return escalator.context([item], now)
