"""Acknowledgments: decide, render and queue one per new customer conversation.

The decision is `rules.decide_ack` (pure); this module looks up the facts it needs,
renders the templates and queues the mail in the transaction that logs the message.
"""

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime

import structlog
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailwatch.config import FaqEntry
from mailwatch.db.models import Message, OutboxKind, OutboxMail, OutboxStatus, ServiceState, Thread
from mailwatch.durations import format_duration
from mailwatch.errors import TransientError
from mailwatch.mail.parse import Address, ParsedMessage
from mailwatch.mail.rules import AckDecision, AckFacts, AckOutcome, Verdict, decide_ack, normalised_address
from mailwatch.pipeline.outbox import enqueue
from mailwatch.policies import AckPolicy, Branding
from mailwatch.templates import Templates, build_email, header_address, our_message_id

log = structlog.get_logger(__name__)

REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd|wg|tr|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
ACK_QUOTE_CHARS = 300  # of the customer's own words, enough to recognise the message
CAP_WINDOW = timedelta(hours=1)
# What the hourly cap counts: acks queued to go, sent or given up on (not held, not expired).
SPENT = (OutboxStatus.PENDING, OutboxStatus.SENT, OutboxStatus.FAILED)
CAP_LOGGED_KEY = "ack_cap_logged_at"  # service_state: when ack_global_cap_reached was last logged
CAP_LOG_EVERY = timedelta(hours=1)  # a flood is one event an hour, not one error per message
RELEASE_SCAN = 2000  # held acks looked at per release, oldest first


@dataclass(frozen=True)
class Received:
    """The mail an acknowledgment would answer, as it is logged."""

    message_id: str
    received_at: datetime


def bare_subject(subject: str, ticket_tag: re.Pattern[str]) -> str:
    """The subject without reply prefixes and ticket tags, for 'Re: … [#1042]'."""
    return " ".join(ticket_tag.sub(" ", REPLY_PREFIX.sub("", subject)).split())


def matching_faq(entries: Sequence[FaqEntry], text: str, limit: int) -> list[FaqEntry]:
    """FAQ entries whose keywords occur in the text, at most `limit`; none if nothing matches.

    An unrelated answer looks careless (a French invoice question offered "Where is my
    parcel?"), so without a match the acknowledgment shows only the FAQ link.
    """
    lowered = text.lower()
    return [entry for entry in entries if any(word.lower() in lowered for word in entry.keywords)][:limit]


class Acknowledger:
    """Decides and queues acknowledgments for one configuration."""

    def __init__(self, policy: AckPolicy, branding: Branding, templates: Templates,
                 ticket_tag: re.Pattern[str]) -> None:
        self.policy = policy
        self.branding = branding
        self.templates = templates
        self.ticket_tag = ticket_tag

    def consider(
        self, session: Session, *, thread: Thread | None, new_thread: bool, parsed: ParsedMessage,
        verdict: Verdict, recipient: Address | None, mail: Received, now: datetime,
        authenticated: bool = False, reply_to_own: bool = False, ledger: "AckLedger | None" = None,
    ) -> AckDecision:
        """Decide for one logged message and queue the ack if due; the outcome goes on its row.

        `authenticated`: a trusted receiving server authenticated the From, so its domain
        is not held to `max_share_per_domain`. A deferred ack is queued held. `ledger`: the
        outbox facts of the batch this message belongs to (all decided at the same `now`).
        """
        policy = self.policy
        source_domain = None if authenticated or recipient is None else _domain(recipient.address)
        wanted = verdict.is_customer and recipient and new_thread
        if wanted:
            ledger = ledger or self.ledger(now, [recipient])
            facts = ledger.facts(session, normalised_address(recipient.address), source_domain)
        else:
            facts = None
        decision = decide_ack(
            verdict, recipient, mail.received_at, now,
            facts or AckFacts(thread_acknowledged=not new_thread, last_ack_to_sender_at=None, acks_in_last_hour=0),
            enabled=policy.enabled, max_age=policy.max_age,
            per_sender_interval=policy.per_sender_interval, max_per_hour=policy.max_per_hour,
            max_per_domain=policy.max_per_domain if source_domain else None, reply_to_own=reply_to_own,
        )
        held = decision.outcome is AckOutcome.DEFERRED
        if (decision.send or held) and thread is not None and recipient is not None:
            decision = self._queue_or_give_up(session, decision, thread, parsed, recipient, mail, now,
                                              source_domain=source_domain, ledger=ledger)
        if not decision.send:
            self._log_suppressed(decision, mail, thread)
        return decision

    def _queue_or_give_up(self, session: Session, decision: AckDecision, thread: Thread, parsed: ParsedMessage,
                          recipient: Address, mail: Received, now: datetime, source_domain: str | None,
                          ledger: "AckLedger | None") -> AckDecision:
        """Queue the ack; a mail whose ack cannot be built is still logged and still escalates."""
        held = decision.outcome is AckOutcome.DEFERRED
        try:
            queued = self._queue(session, thread, parsed, recipient, mail, now, held=held, source_domain=source_domain)
        except (SQLAlchemyError, TransientError):
            raise  # the database's trouble, not this mail's: the batch is retried
        except Exception as exc:  # noqa: BLE001 - anything this one mail's content can trigger
            log.exception("ack_unsendable", thread=thread.id, message_id=mail.message_id)
            return AckDecision(AckOutcome.UNSENDABLE, f"the ack could not be built: {type(exc).__name__}")
        if queued and ledger is not None:
            ledger.queued(normalised_address(recipient.address), source_domain, held=held)
        return decision

    def ledger(self, now: datetime, recipients: Sequence[Address]) -> "AckLedger":
        """The outbox facts for deciding a batch at `now` whose customers are `recipients`."""
        keys = {normalised_address(recipient.address) for recipient in recipients}
        return AckLedger(now, self.policy.per_sender_interval, self.policy.max_per_domain, keys)

    def _queue(self, session: Session, thread: Thread, parsed: ParsedMessage, recipient: Address,
               mail: Received, now: datetime, held: bool = False, source_domain: str | None = None) -> bool:
        branding = self.branding
        context = self.context(thread, parsed, recipient, mail.received_at)
        message = build_email(
            self.templates.render_mail("ack", context),
            sender=branding.sender, to=header_address(recipient.name, recipient.address),
            message_id=our_message_id(thread.id, now, branding.sender_domain), date=format_datetime(now),
            # A made-up Message-ID would thread nothing: omit the reply headers then.
            in_reply_to=None if parsed.message_id_synthesised else parsed.message_id,
            references=parsed.references,
            extra_headers={
                "Auto-Submitted": "auto-replied",
                "Precedence": "bulk",
                "X-Auto-Response-Suppress": "All",
                "X-Mailwatch-Loop": self.policy.mailbox_addresses[thread.mailbox],
            },
        )
        queued = enqueue(session, kind=OutboxKind.ACK, dedupe_key=f"ack:{thread.id}", message=message,
                recipient=recipient.address.lower(), envelope_from=self.policy.envelope_from, now=now,
                thread_id=thread.id, status=OutboxStatus.HELD if held else OutboxStatus.PENDING,
                source_domain=source_domain, recipient_key=normalised_address(recipient.address))
        log.info("ack_held" if held else "ack_queued", thread=thread.id, recipient=recipient.address,
                 message_id=mail.message_id, ack_message_id=message.message_id)
        return queued

    def context(self, thread: Thread, parsed: ParsedMessage, recipient: Address, received_at: datetime) -> dict:
        """What the ack templates see."""
        branding, faq = self.branding, self.policy.faq
        return {
            **branding.context(),
            "ticket": branding.ticket(thread.id),
            "ticket_number": thread.id,
            "customer": {"name": recipient.name, "address": recipient.address},
            "subject": parsed.subject,
            "subject_without_prefix": bare_subject(parsed.subject, self.ticket_tag),
            "received_at": branding.local_time(received_at),
            "deadline": branding.local_time(thread.deadline_at or received_at + self.policy.first_response),
            "response_within": format_duration(self.policy.first_response),
            "faq": {"url": faq.url, "entries": matching_faq(faq.entries, f"{parsed.subject} {parsed.snippet}", faq.max_entries)},
            "quote": parsed.snippet[:ACK_QUOTE_CHARS],
        }

    def _log_suppressed(self, decision: AckDecision, mail: Received, thread: Thread | None) -> None:
        log.info("ack_suppressed", outcome=decision.outcome.value, reason=decision.reason,
                 message_id=mail.message_id, thread=thread.id if thread else None)


    def _log_cap_reached(self, session: Session, in_hour: int, waiting: int, now: datetime) -> None:
        # Once an hour: a flood of 10,000 mails is one event, not 9,800 error lines.
        state = session.get(ServiceState, CAP_LOGGED_KEY)
        if state is not None and now - datetime.fromisoformat(state.value) < CAP_LOG_EVERY:
            return
        session.merge(ServiceState(key=CAP_LOGGED_KEY, value=now.isoformat()))
        log.error("ack_global_cap_reached", acks_in_last_hour=in_hour, held=waiting,
                  cap=self.policy.max_per_hour,
                  hint="a mail loop or a flood: acknowledgments wait and go out as the hourly budget allows")

    def release_held(self, session: Session, now: datetime) -> int:
        """Send held acks as the budget allows, fairly across domains; expire those past max_age."""
        rows = session.execute(
            select(OutboxMail, Thread.first_received_at).join(Thread, Thread.id == OutboxMail.thread_id)
            .where(OutboxMail.kind == OutboxKind.ACK, OutboxMail.status == OutboxStatus.HELD)
            .order_by(OutboxMail.created_at, OutboxMail.id).limit(RELEASE_SCAN)
            .with_for_update(skip_locked=True)  # another instance releases the others
        ).all()
        max_age = self.policy.max_age
        waiting = [row for row, received_at in rows if now - received_at <= max_age]
        expired = [row for row, received_at in rows if now - received_at > max_age]
        released, in_hour = self._release(session, fair_order(waiting), now)
        if in_hour >= self.policy.max_per_hour and len(waiting) > len(released):
            self._log_cap_reached(session, in_hour, len(waiting) - len(released), now)
        _settle(session, expired, AckOutcome.MAX_AGE, f"waited for the hourly budget past max_age {max_age}", now)
        _settle(session, released, AckOutcome.SEND, "sent once the hourly budget allowed", now)
        if released or expired:
            log.info("held_acks_released", released=len(released), expired=len(expired),
                     waiting=len(waiting) - len(released))
        return len(released)

    def _release(self, session: Session, waiting: list[OutboxMail], now: datetime) -> tuple[list[OutboxMail], int]:
        """Release what the hour's budget and each domain's share allow; also the hour's count after it."""
        policy = self.policy
        counted = _spent_since(now - CAP_WINDOW)
        in_hour = session.scalar(select(func.count(OutboxMail.id)).where(*counted))
        per_domain = Counter(dict(session.execute(
            select(OutboxMail.source_domain, func.count(OutboxMail.id))
            .where(*counted, OutboxMail.source_domain.is_not(None)).group_by(OutboxMail.source_domain)
        ).all()))
        released: list[OutboxMail] = []
        for row in waiting:
            if in_hour + len(released) >= policy.max_per_hour:
                break
            if row.source_domain is not None and per_domain[row.source_domain] >= policy.max_per_domain:
                continue
            per_domain[row.source_domain] += 1
            row.status, row.created_at, row.next_attempt_at = OutboxStatus.PENDING, now, now
            released.append(row)
        return released, in_hour + len(released)


class AckLedger:
    """The outbox facts a batch's ack decisions need: read once, kept current as the batch queues.

    Per message that was three queries, two of them counting the hour's acks, so a burst of n
    new customers cost O(n²) rows read. Every decision of a batch shares one `now` (one window),
    and only this batch's own queueing changes the counts meanwhile, so adding each queued ack
    here gives the same facts the queries would have.
    """

    def __init__(self, now: datetime, interval: timedelta, max_per_domain: int, keys: set[str]) -> None:
        self.now, self.interval, self.max_per_domain = now, interval, max_per_domain
        self.keys = keys  # recipient keys whose last ack is read with the counts
        self.loaded = False
        self.in_hour = 0
        self.per_domain: Counter[str] = Counter()  # spent acks per source domain
        self.last_to: dict[str, datetime] = {}
        self.held: dict[str, int] = {}  # held acks per source domain, read when first needed

    def facts(self, session: Session, key: str, source_domain: str | None) -> AckFacts:
        if not self.loaded or key not in self.keys:
            self._load(session, self.keys | {key})
        to_domain = self.per_domain[source_domain] if source_domain else 0
        held = self._held_for(session, source_domain) if source_domain and to_domain >= self.max_per_domain else 0
        return AckFacts(thread_acknowledged=False, last_ack_to_sender_at=self.last_to.get(key),
                        acks_in_last_hour=self.in_hour, acks_to_domain_in_last_hour=to_domain, held_for_domain=held)

    def queued(self, key: str, source_domain: str | None, *, held: bool) -> None:
        """Count an ack this batch just queued, as the queries would now see it."""
        if self.now > self.now - self.interval:
            self.last_to[key] = self.now
        if held:
            if source_domain in self.held:
                self.held[source_domain] += 1
        else:
            self.in_hour += 1
            if source_domain:
                self.per_domain[source_domain] += 1

    def _load(self, session: Session, keys: set[str]) -> None:
        spent = _spent_since(self.now - CAP_WINDOW)
        if not self.loaded:
            self.in_hour = session.scalar(select(func.count(OutboxMail.id)).where(*spent))
            self.per_domain = Counter(dict(session.execute(
                select(OutboxMail.source_domain, func.count(OutboxMail.id))
                .where(*spent, OutboxMail.source_domain.is_not(None)).group_by(OutboxMail.source_domain)
            ).all()))
        unread = keys - self.keys if self.loaded else keys
        if unread:
            self.last_to.update(dict(session.execute(
                select(OutboxMail.recipient_key, func.max(OutboxMail.created_at))
                .where(OutboxMail.kind == OutboxKind.ACK, OutboxMail.recipient_key.in_(sorted(unread)),
                       OutboxMail.created_at > self.now - self.interval)
                .group_by(OutboxMail.recipient_key)
            ).all()))
        self.keys, self.loaded = keys, True

    def _held_for(self, session: Session, source_domain: str) -> int:
        if source_domain not in self.held:
            self.held[source_domain] = session.scalar(select(func.count(OutboxMail.id)).where(
                OutboxMail.kind == OutboxKind.ACK, OutboxMail.source_domain == source_domain,
                OutboxMail.status == OutboxStatus.HELD))
        return self.held[source_domain]


def fair_order(held: list[OutboxMail]) -> list[OutboxMail]:
    """Round-robin over recipient domains, oldest-waiting first within each round.

    One flooding domain then gets one turn per round like every other domain, so a
    customer elsewhere is never stuck behind thousands of the flood's acks.
    """
    queues: dict[str, list[OutboxMail]] = defaultdict(list)
    for row in sorted(held, key=lambda r: (r.created_at, r.id)):
        queues[_domain(row.recipient)].append(row)
    ordered: list[OutboxMail] = []
    for turn in range(max((len(q) for q in queues.values()), default=0)):
        ordered.extend(sorted((q[turn] for q in queues.values() if turn < len(q)), key=lambda r: (r.created_at, r.id)))
    return ordered


def _settle(session: Session, rows: list[OutboxMail], outcome: AckOutcome, reason: str, now: datetime) -> None:
    """Record the final outcome of held acks on their messages (and give up the expired ones)."""
    if not rows:
        return
    if outcome is AckOutcome.MAX_AGE:
        for row in rows:
            row.status, row.last_error = OutboxStatus.EXPIRED, f"max-age: {reason}"
    session.execute(
        update(Message).where(Message.thread_id.in_([r.thread_id for r in rows]),
                              Message.ack_outcome == AckOutcome.DEFERRED.value)
        .values(ack_outcome=outcome.value, ack_reason=reason)
    )


def _spent_since(since: datetime) -> tuple[ColumnElement[bool], ...]:
    """Acks that used the hourly budget since `since` (an index range on kind, status, time)."""
    return (OutboxMail.kind == OutboxKind.ACK, OutboxMail.status.in_(SPENT), OutboxMail.created_at > since)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def sample_context(acknowledger: "Acknowledger", now: datetime) -> dict:
    """A realistic context for test-rendering the ack templates at `check` time."""
    parsed = ParsedMessage(
        message_id="<sample@example.com>", subject="Réclamation: order 1234 arrived broken",
        snippet="Hello, my order arrived broken. I would like a refund or a replacement.",
        from_=(Address("Renée Lefèvre", "renee@example.com"),),
    )
    mailbox = next(iter(acknowledger.policy.mailbox_addresses))
    thread = Thread(id=1042, mailbox=mailbox, deadline_at=now + acknowledger.policy.first_response)
    return acknowledger.context(thread, parsed, parsed.from_[0], now)
