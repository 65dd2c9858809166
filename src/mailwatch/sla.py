"""The response clock, as pure arithmetic: deadlines, time left, escalation steps.

Everything takes `now` as an argument, so tests never sleep or patch the clock.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from mailwatch.config import format_duration


@dataclass(frozen=True)
class ClockPolicy:
    """How long staff have to answer: first response and, optionally, later ones."""

    first_response: timedelta
    next_response: timedelta | None = None
    steps: tuple[timedelta, ...] = ()  # escalation steps' `after`, ascending


def first_deadline(received_at: datetime, policy: ClockPolicy) -> datetime:
    """The deadline for a new conversation's first customer message."""
    return received_at + policy.first_response


def reopened_deadline(received_at: datetime, policy: ClockPolicy) -> datetime | None:
    """The deadline after a customer writes again into an answered thread, if any."""
    if policy.next_response is None:
        return None
    return received_at + policy.next_response


def due_steps(clock_started_at: datetime, now: datetime, steps_after: Sequence[timedelta], sent_level: int) -> range:
    """The escalation steps (1-based) due by `now` and not yet sent; after downtime, all of them."""
    elapsed = now - clock_started_at
    due = sum(1 for after in steps_after if elapsed >= after)
    return range(sent_level + 1, due + 1)


def next_escalation_at(clock_started_at: datetime, steps_after: Sequence[timedelta], sent_level: int) -> datetime | None:
    """When the step after `sent_level` falls due; None once every step was sent."""
    if sent_level >= len(steps_after):
        return None
    return clock_started_at + steps_after[sent_level]


def rounded(duration: timedelta) -> str:
    """A duration to the minute for people: '23h 59m', 'under a minute'."""
    minutes = int(abs(duration).total_seconds() // 60)
    return format_duration(timedelta(minutes=minutes)) if minutes else "under a minute"


def human_time(value: datetime, tz: tzinfo) -> str:
    """A time for people in the service's zone: 'Monday 9 June 2025, 14:02 CEST'."""
    local = value.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M %Z}"
