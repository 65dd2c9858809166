"""Narrow, frozen views of the settings, built once and handed to the components.

A component that sends acknowledgments needs the ack rules and the branding, not the
whole `Settings`; passing these keeps each one's dependencies visible and lets tests
build exactly what a component reads.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from mailwatch.config import FaqSettings, Settings
from mailwatch.sla import ClockPolicy, human_time


def ticket_label(prefix: str, number: int) -> str:
    """A ticket as people see it: '#1042'."""
    return f"{prefix}{number}"


@dataclass(frozen=True)
class Branding:
    """Who the emails come from and how they show tickets and times."""

    name: str
    phone: str
    tz: tzinfo
    ticket_prefix: str
    sender: str  # the From header, e.g. 'Acme Support <support@acme.example>'
    sender_address: str  # its bare address: envelope sender of our own mail, loop marker
    sender_domain: str  # for our Message-IDs

    def ticket(self, number: int) -> str:
        """The ticket label of a thread number."""
        return ticket_label(self.ticket_prefix, number)

    def local_time(self, moment: datetime) -> str:
        """A time for people, in the service's zone."""
        return human_time(moment, self.tz)

    def context(self) -> dict:
        """What every template sees, whatever it renders."""
        return {"service": {"name": self.name, "phone": self.phone}}


@dataclass(frozen=True)
class AckPolicy:
    """When an acknowledgment goes out, and what it promises."""

    enabled: bool
    max_age: timedelta
    per_sender_interval: timedelta
    max_per_hour: int
    envelope_from: str  # "" for the empty envelope sender RFC 3834 recommends
    first_response: timedelta  # the promise the ack states
    faq: FaqSettings
    mailbox_addresses: dict[str, str]  # mailbox name → address, the loop marker of its acks


@dataclass(frozen=True)
class EscalationPolicy:
    """The steps of the clock and who hears about each."""

    clock: ClockPolicy
    recipients: tuple[tuple[str, ...], ...]  # per step, in step order

    def recipients_of(self, step: int) -> tuple[str, ...]:
        """Who gets step `step` (1-based)."""
        return self.recipients[step - 1]


@dataclass(frozen=True)
class Policies:
    """Everything the pipeline needs from the settings, built once per configuration."""

    branding: Branding
    clock: ClockPolicy
    ack: AckPolicy
    escalation: EscalationPolicy
    alert_recipients: tuple[str, ...]


def build_policies(settings: Settings) -> Policies:
    """The policies of one configuration."""
    clock = ClockPolicy(settings.sla.first_response, settings.sla.next_response,
                        tuple(step.after for step in settings.escalations))
    return Policies(
        branding=_branding(settings), clock=clock, ack=_ack_policy(settings),
        escalation=EscalationPolicy(clock, tuple(tuple(step.to) for step in settings.escalations)),
        alert_recipients=tuple(settings.alert_recipients),
    )


def _branding(settings: Settings) -> Branding:
    service, smtp = settings.service, settings.smtp
    return Branding(
        name=service.name, phone=service.phone, tz=service.tz, ticket_prefix=service.ticket_prefix,
        sender=smtp.from_ if smtp else "", sender_address=smtp.from_address if smtp else "",
        sender_domain=smtp.from_domain if smtp else "mailwatch.invalid",
    )


def _ack_policy(settings: Settings) -> AckPolicy:
    ack = settings.acknowledgment
    return AckPolicy(
        enabled=ack.enabled, max_age=ack.max_age, per_sender_interval=ack.per_sender_interval,
        max_per_hour=ack.max_per_hour, envelope_from=ack.envelope_from or "",
        first_response=settings.sla.first_response, faq=settings.faq,
        mailbox_addresses={mailbox.name: mailbox.address for mailbox in settings.mailboxes},
    )
