"""The response clock, as pure arithmetic: deadlines, time left, escalation steps.

Everything takes `now` as an argument, so tests never sleep or patch the clock.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ClockPolicy:
    """How long staff have to answer: first response and, optionally, later ones."""

    first_response: timedelta
    next_response: timedelta | None = None


def first_deadline(received_at: datetime, policy: ClockPolicy) -> datetime:
    """The deadline for a new conversation's first customer message."""
    return received_at + policy.first_response


def reopened_deadline(received_at: datetime, policy: ClockPolicy) -> datetime | None:
    """The deadline after a customer writes again into an answered thread, if any."""
    if policy.next_response is None:
        return None
    return received_at + policy.next_response


def time_left(deadline_at: datetime, now: datetime) -> timedelta:
    """How long until the deadline; negative once it has passed."""
    return deadline_at - now


def due_step(clock_started_at: datetime, now: datetime, steps_after: Sequence[timedelta], sent_level: int) -> int:
    """The highest escalation step (1-based) due by `now` and not yet sent, else 0."""
    elapsed = now - clock_started_at
    due = sum(1 for after in steps_after if elapsed >= after)
    return due if due > sent_level else 0
