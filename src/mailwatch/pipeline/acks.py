"""Acknowledgments: decide, render and queue one per new customer conversation.

The decision is `rules.decide_ack` (pure); this module looks up the facts it needs,
renders the templates and queues the mail in the transaction that logs the message.
"""

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.utils import format_datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailwatch.config import FaqEntry
from mailwatch.db.models import Message, OutboxKind, OutboxMail, Thread
from mailwatch.durations import format_duration
from mailwatch.mail.parse import Address, ParsedMessage
from mailwatch.mail.rules import AckDecision, AckFacts, AckOutcome, Verdict, decide_ack
from mailwatch.pipeline.outbox import enqueue
from mailwatch.policies import AckPolicy, Branding
from mailwatch.templates import Templates, build_email, header_address, our_message_id

log = structlog.get_logger(__name__)

REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd|wg|tr|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
ACK_QUOTE_CHARS = 300  # of the customer's own words, enough to recognise the message
CAP_WINDOW = timedelta(hours=1)


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
        verdict: Verdict, recipient: Address | None, row: Message, now: datetime,
    ) -> AckDecision:
        """Decide for one logged message, record the outcome on it, queue the ack if due."""
        policy = self.policy
        facts = self._facts(session, recipient, now) if verdict.is_customer and recipient and new_thread else None
        decision = decide_ack(
            verdict, recipient, row.received_at, now,
            facts or AckFacts(thread_acknowledged=not new_thread, last_ack_to_sender_at=None, acks_in_last_hour=0),
            enabled=policy.enabled, max_age=policy.max_age,
            per_sender_interval=policy.per_sender_interval, max_per_hour=policy.max_per_hour,
        )
        row.ack_outcome, row.ack_reason = decision.outcome.value, decision.reason
        if decision.send and thread is not None and recipient is not None:
            self._queue(session, thread, parsed, recipient, row, now)
        else:
            self._log_suppressed(decision, row, thread)
        return decision

    def _facts(self, session: Session, recipient: Address, now: datetime) -> AckFacts:
        is_ack = OutboxMail.kind == OutboxKind.ACK
        last = session.scalar(
            select(func.max(OutboxMail.created_at)).where(is_ack, OutboxMail.recipient == recipient.address.lower())
        )
        in_hour = session.scalar(
            select(func.count(OutboxMail.id)).where(is_ack, OutboxMail.created_at > now - CAP_WINDOW)
        )
        return AckFacts(thread_acknowledged=False, last_ack_to_sender_at=last, acks_in_last_hour=in_hour)

    def _queue(self, session: Session, thread: Thread, parsed: ParsedMessage, recipient: Address,
               row: Message, now: datetime) -> None:
        branding = self.branding
        context = self.context(thread, parsed, recipient, row.received_at)
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
        enqueue(session, kind=OutboxKind.ACK, dedupe_key=f"ack:{thread.id}", message=message,
                recipient=recipient.address.lower(), envelope_from=self.policy.envelope_from, now=now,
                thread_id=thread.id)
        log.info("ack_queued", thread=thread.id, recipient=recipient.address, message_id=row.message_id,
                 ack_message_id=message["Message-ID"])

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

    def _log_suppressed(self, decision: AckDecision, row: Message, thread: Thread | None) -> None:
        if decision.outcome is AckOutcome.GLOBAL_CAP:
            log.error("ack_global_cap_reached", thread=thread.id if thread else None, reason=decision.reason,
                      hint="a mail loop or a flood: acknowledgments are paused")
            return
        log.info("ack_suppressed", outcome=decision.outcome.value, reason=decision.reason,
                 message_id=row.message_id, thread=thread.id if thread else None)


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
