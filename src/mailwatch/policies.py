"""Narrow, frozen views of the settings, built once and handed to the components.

A component that sends acknowledgments needs the ack rules and the branding, not the
whole `Settings`; passing these keeps each one's dependencies visible and lets tests
build exactly what a component reads.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

from mailwatch.businesstime import Calendar
from mailwatch.config import EscalationStep, FaqSettings, MailboxSettings, Settings
from mailwatch.durations import format_duration
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
    max_per_domain: int  # the hourly share of one unauthenticated source domain
    envelope_from: str  # "" for the empty envelope sender RFC 3834 recommends
    first_response: timedelta  # the promise the ack states
    faq: FaqSettings
    mailbox_addresses: dict[str, str]  # mailbox name → address, the loop marker of its acks
    templates: Path | None = None  # this mailbox's template folder; None: [service] templates


@dataclass(frozen=True)
class EscalationPolicy:
    """The steps of the clock and who hears about each."""

    clock: ClockPolicy
    recipients: tuple[tuple[str, ...], ...]  # per step, in step order
    tz: tzinfo | None = None  # the zone of the times the digest shows; None: the branding's
    mailboxes: Mapping[str, "EscalationPolicy"] = field(default_factory=dict)  # per-mailbox overrides

    def recipients_of(self, step: int) -> tuple[str, ...]:
        """Who gets step `step` (1-based)."""
        return self.recipients[step - 1]

    def for_mailbox(self, name: str) -> "EscalationPolicy":
        """The steps, clock and recipients for one mailbox's threads."""
        return self.mailboxes.get(name, self)

    @property
    def escalates(self) -> bool:
        """Whether any mailbox has a step."""
        return bool(self.clock.steps) or any(policy.clock.steps for policy in self.mailboxes.values())


@dataclass(frozen=True)
class Policies:
    """Everything the pipeline needs from the settings, built once per configuration."""

    branding: Branding
    clock: ClockPolicy
    ack: AckPolicy
    escalation: EscalationPolicy
    alert_recipients: tuple[str, ...]
    mailboxes: Mapping[str, "Policies"] = field(default_factory=dict)  # each mailbox's effective policies

    def for_mailbox(self, name: str) -> "Policies":
        """The policies for one mailbox's threads and emails: its overrides, else the global ones."""
        return self.mailboxes.get(name, self)

    def describe(self, name: str) -> str:
        """One line for `check`: the mailbox's effective clock, deadlines and steps."""
        policies = self.for_mailbox(name)
        clock, escalation = policies.clock, policies.escalation
        next_response = format_duration(clock.next_response) if clock.next_response else "none"
        steps = "; ".join(
            f"{format_duration(after)} → {', '.join(escalation.recipients_of(index + 1))}"
            + (f" (in {hold.name} hours)" if hold else "")
            for index, (after, hold) in enumerate(zip(clock.steps, clock.holds, strict=True))
        ) or "none"
        return (f"mailbox {name}: clock {clock.label}, first response {format_duration(clock.first_response)}, "
                f"next response {next_response}, escalation {steps}, service {policies.branding.name!r}")


def build_policies(settings: Settings) -> Policies:
    """The policies of one configuration, with each mailbox's effective ones."""
    calendars = {calendar.name: calendar.calendar for calendar in settings.calendars}
    base = _policies(settings, None, calendars)
    mailboxes = {mailbox.name: _policies(settings, mailbox, calendars) for mailbox in settings.mailboxes}
    escalation = replace(base.escalation, mailboxes={name: policy.escalation for name, policy in mailboxes.items()})
    return replace(base, escalation=escalation, mailboxes=mailboxes)


def _policies(settings: Settings, mailbox: MailboxSettings | None, calendars: dict[str, Calendar]) -> Policies:
    # mailbox None: the global [sla], [[escalation]] and [service], for threads of no configured mailbox.
    clock = _clock_policy(settings, mailbox, calendars)
    steps = settings.steps_of(mailbox.name) if mailbox else settings.escalations
    branding = _branding(settings, mailbox, clock.calendar)
    return Policies(
        branding=branding, clock=clock,
        ack=replace(_ack_policy(settings), first_response=clock.first_response,
                    templates=mailbox.service.templates if mailbox and mailbox.service else None),
        escalation=EscalationPolicy(clock, tuple(tuple(step.to) for step in steps), tz=branding.tz),
        alert_recipients=tuple(settings.alert_recipients),
    )


def _clock_policy(settings: Settings, mailbox: MailboxSettings | None, calendars: dict[str, Calendar]) -> ClockPolicy:
    own = mailbox.sla if mailbox and mailbox.sla else None
    sla = settings.sla
    calendar_name = settings.calendar_of(mailbox.name) if mailbox else sla.calendar
    calendar = calendars.get(calendar_name) if calendar_name else None
    steps = settings.steps_of(mailbox.name) if mailbox else settings.escalations
    return ClockPolicy(
        first_response=own.first_response if own and own.first_response else sla.first_response,
        next_response=own.next_response if own and own.next_response else sla.next_response,
        steps=tuple(step.after for step in steps), calendar=calendar,
        holds=tuple(_hold(step, calendar, calendars) for step in steps),
    )


def _hold(step: EscalationStep, calendar: Calendar | None, calendars: dict[str, Calendar]) -> Calendar | None:
    # The hours a "business-hours" step waits for: its own calendar, else the thread's.
    if step.deliver != "business-hours":
        return None
    return calendars[step.calendar] if step.calendar else calendar


def _branding(settings: Settings, mailbox: MailboxSettings | None = None, calendar: Calendar | None = None) -> Branding:
    # A mailbox on a calendar shows its times in the calendar's zone: the customer's promise
    # reads in the team's local time.
    service, smtp = settings.service, settings.smtp
    own = mailbox.service if mailbox and mailbox.service else None
    return Branding(
        name=own.name if own and own.name else service.name,
        phone=own.phone if own and own.phone is not None else service.phone,
        tz=calendar.tz if calendar else service.tz, ticket_prefix=service.ticket_prefix,
        sender=smtp.from_ if smtp else "", sender_address=smtp.from_address if smtp else "",
        sender_domain=smtp.from_domain if smtp else "mailwatch.invalid",
    )


def _ack_policy(settings: Settings) -> AckPolicy:
    ack = settings.acknowledgment
    return AckPolicy(
        enabled=ack.enabled, max_age=ack.max_age, per_sender_interval=ack.per_sender_interval,
        max_per_hour=ack.max_per_hour, max_per_domain=ack.max_per_domain, envelope_from=ack.envelope_from or "",
        first_response=settings.sla.first_response, faq=settings.faq,
        mailbox_addresses={mailbox.name: mailbox.address for mailbox in settings.mailboxes},
    )
