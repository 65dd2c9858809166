"""The response clock, as pure arithmetic and transitions: deadlines, answers, steps.

A thread's clock starts with its customer's message and stops at a staff answer;
each new clock lets every escalation step fire once more. Everything here takes
`now` (or the message's time) as an argument and works on any object with a
thread's clock fields (`ClockedThread`), so tests never sleep, patch or touch a
database.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Protocol

from mailwatch.businesstime import Calendar, deadline, within_hours
from mailwatch.mail.rules import Category, Verdict


class ThreadStatus(StrEnum):
    """Where a conversation stands; stored as its value."""

    OPEN = "open"  # a customer waits: the clock runs
    ANSWERED = "answered"  # staff answered: the clock stopped
    CLOSED = "closed"  # nothing more is expected of staff


class AnsweredVia(StrEnum):
    """How a staff answer was noticed (`answered_via`)."""

    STAFF_ADDRESS = "staff-address"
    OWN_ADDRESS = "own-address"
    SENT_FOLDER = "sent-folder"
    FLAG = "flag"
    COMMAND = "command"


# How an answer that came through the IMAP login or the command line was authenticated.
IMAP_LOGIN = "imap-login"  # the Sent folder and the \Answered flag: only the account can write them
LOCAL_COMMAND = "local-command"  # `mailwatch thread answered`: whoever may run mailwatch

# Who answers a thread by writing into it, once authenticated (`rules.staff_answer`). The
# shared address itself counts: agents often reply from it with the mailbox in Cc
# (mailwatch's own mail is OWN_MESSAGE).
STAFF_RESPONSES = {Category.STAFF: AnsweredVia.STAFF_ADDRESS, Category.OWN_ADDRESS: AnsweredVia.OWN_ADDRESS}
# In the Sent folder, any of these is a person's reply (not an auto-reply or our own ack).
SENT_RESPONSES = frozenset({Category.STAFF, Category.OWN_ADDRESS, Category.CUSTOMER})


@dataclass(frozen=True)
class ClockPolicy:
    """How long staff have to answer: first response and, optionally, later ones.

    With a `calendar` every duration here is open time of that calendar; without one,
    elapsed time. `holds[i]`: the calendar whose hours step i+1 waits for when it falls
    due while closed ("business-hours" delivery); None sends it whenever it is due.
    """

    first_response: timedelta
    next_response: timedelta | None = None
    steps: tuple[timedelta, ...] = ()  # escalation steps' `after`, ascending
    calendar: Calendar | None = None
    holds: tuple[Calendar | None, ...] = ()

    @property
    def label(self) -> str:
        """The clock's name in `threads --json`: 'elapsed' or 'business:office'."""
        return self.calendar.label if self.calendar else "elapsed"


class ClockedThread(Protocol):
    """The fields of a thread that its clock reads and writes (the `Thread` row has them)."""

    status: str
    clock: int
    clock_started_at: datetime
    deadline_at: datetime | None
    escalation_level: int
    next_escalation_at: datetime | None
    last_customer_at: datetime
    message_count: int
    answered_at: datetime | None
    answered_via: str | None
    answered_by: str | None
    answered_auth: str | None
    first_answered_at: datetime | None
    first_answered_via: str | None
    first_answered_by: str | None
    snoozed_until: datetime | None
    snoozed_clock: int | None
    snooze_shift_s: int


def clock_anchor(thread: ClockedThread) -> datetime:
    """What the running clock's deadline and steps count from: its start, moved on by its snoozes.

    The start itself never moves: it is when the customer's wait began, which the digest,
    the metrics and the report show.
    """
    return thread.clock_started_at + timedelta(seconds=thread.snooze_shift_s or 0)


def snoozed_on_clock(thread: ClockedThread) -> datetime | None:
    """Until when the running clock is snoozed, if it is."""
    return thread.snoozed_until if thread.snoozed_clock == thread.clock else None


def first_deadline(received_at: datetime, policy: ClockPolicy) -> datetime:
    """The deadline for a new conversation's first customer message."""
    return deadline(received_at, policy.first_response, policy.calendar)


def reopened_deadline(received_at: datetime, policy: ClockPolicy) -> datetime | None:
    """The deadline after a customer writes again into an answered thread, if any."""
    if policy.next_response is None:
        return None
    return deadline(received_at, policy.next_response, policy.calendar)


def clock_deadline(thread: ClockedThread, policy: ClockPolicy) -> datetime:
    """The deadline of a thread's running clock under `policy`: for recomputing after a reload."""
    response = policy.first_response if thread.clock <= 1 else (policy.next_response or policy.first_response)
    return deadline(clock_anchor(thread), response, policy.calendar)


def step_times(clock_started_at: datetime, steps_after: Sequence[timedelta], calendar: Calendar | None = None,
               holds: Sequence[Calendar | None] = ()) -> list[datetime]:
    """When each step goes out: due on the clock, held to opening if its delivery waits for hours.

    Steps go out in order, so a step never goes out before the one before it (a held
    step 1 takes an unheld step 2 with it, in the same digest).
    """
    times: list[datetime] = []
    for index, after in enumerate(steps_after):
        hold = holds[index] if index < len(holds) else None
        at = within_hours(deadline(clock_started_at, after, calendar), hold)
        times.append(max(at, times[-1]) if times else at)
    return times


def due_steps(clock_started_at: datetime, now: datetime, steps_after: Sequence[timedelta], sent_level: int,
              calendar: Calendar | None = None, holds: Sequence[Calendar | None] = ()) -> range:
    """The escalation steps (1-based) due by `now` and not yet sent; after downtime, all of them."""
    due = sum(1 for at in step_times(clock_started_at, steps_after, calendar, holds) if at <= now)
    return range(sent_level + 1, due + 1)


def next_escalation_at(clock_started_at: datetime, steps_after: Sequence[timedelta], sent_level: int,
                       calendar: Calendar | None = None, holds: Sequence[Calendar | None] = ()) -> datetime | None:
    """When the step after `sent_level` goes out; None once every step was sent."""
    if sent_level >= len(steps_after):
        return None
    return step_times(clock_started_at, steps_after[:sent_level + 1], calendar, holds)[-1]


def next_step_at(thread: ClockedThread, policy: ClockPolicy) -> datetime | None:
    """When the thread's next step goes out under `policy`; never before a snooze ends.

    Recomputed from the stored facts alone, so a restart or a reload during a snooze
    cannot bring a step forward (one already overdue when snoozed waits too).
    """
    pending = next_escalation_at(clock_anchor(thread), policy.steps, thread.escalation_level, policy.calendar,
                                 policy.holds)
    until = snoozed_on_clock(thread)
    return max(pending, until) if pending and until else pending


def thread_due_steps(thread: ClockedThread, now: datetime, policy: ClockPolicy) -> range:
    """The steps due by `now` and not yet sent, counted from the anchor; none while snoozed."""
    until = snoozed_on_clock(thread)
    if until is not None and now < until:
        return range(0)
    return due_steps(clock_anchor(thread), now, policy.steps, thread.escalation_level, policy.calendar, policy.holds)


def human_time(value: datetime, tz: tzinfo) -> str:
    """A time for people in the service's zone: 'Monday 9 June 2025, 14:02 CEST'."""
    local = value.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M %Z}"


# -- transitions ---------------------------------------------------------------------


def start_first_clock(thread: ClockedThread, received_at: datetime, policy: ClockPolicy) -> None:
    """A new conversation: clock 1 runs from its first customer message."""
    thread.status = ThreadStatus.OPEN
    thread.clock = 1
    thread.clock_started_at = thread.last_customer_at = received_at
    thread.snooze_shift_s = 0
    thread.deadline_at = first_deadline(received_at, policy)
    thread.escalation_level = 0
    thread.next_escalation_at = next_step_at(thread, policy)


def skip_escalations(thread: ClockedThread, policy: ClockPolicy) -> None:
    """Count every step of the current clock as sent: for mail found on a first start."""
    thread.escalation_level = len(policy.steps)
    thread.next_escalation_at = None


def apply_message(
    thread: ClockedThread, verdict: Verdict, sender: str | None, received_at: datetime, policy: ClockPolicy,
    in_sent_folder: bool = False, staff_authenticated: str | None = None,
) -> None:
    """Update a thread's count and clock for one more message in it.

    `staff_authenticated`: how a staff or own-address From was authenticated
    (`rules.staff_answer`); without it such a message is only a claim and stops nothing.
    """
    thread.message_count += 1
    if in_sent_folder:
        # Whatever its From says, a person's mail in our Sent folder is our answer.
        if verdict.category in SENT_RESPONSES:
            mark_answered(thread, received_at, via=AnsweredVia.SENT_FOLDER, by=sender, policy=policy, how=IMAP_LOGIN)
    elif verdict.is_customer:
        customer_wrote(thread, received_at, policy)
    elif verdict.category in STAFF_RESPONSES and staff_authenticated is not None:
        mark_answered(thread, received_at, via=STAFF_RESPONSES[verdict.category], by=sender, policy=policy,
                      how=staff_authenticated)


def customer_wrote(thread: ClockedThread, received_at: datetime, policy: ClockPolicy) -> None:
    """A customer message: reopens an answered or closed thread when a next deadline is set."""
    thread.last_customer_at = max(thread.last_customer_at, received_at)
    if thread.status == ThreadStatus.OPEN:
        return
    deadline = reopened_deadline(received_at, policy)
    if deadline is None:
        return
    _start_new_clock(thread, received_at, deadline, policy)


def mark_answered(
    thread: ClockedThread, at: datetime, via: str, by: str | None, policy: ClockPolicy,
    covers_until: datetime | None = None, how: str | None = None,
) -> bool:
    """Stop the clock of an open thread; False when there was nothing to stop.

    `covers_until`: the newest customer message this answer can have seen (the staff
    message's own time, or the flagged message's). A customer message after it still
    waits, so the thread reopens on a new clock from that message. `how`: how the answer
    was authenticated ("dmarc", "imap-login", …), shown beside `answered_via`.
    """
    if thread.status != ThreadStatus.OPEN:
        return False
    thread.status = ThreadStatus.ANSWERED
    thread.answered_at = at
    thread.answered_via = str(via)  # a plain string in the row, whatever the enum
    thread.answered_by = by
    thread.answered_auth = how
    if thread.first_answered_at is None:
        # Later clocks time later answers; the first response is measured once, on clock 1.
        thread.first_answered_at, thread.first_answered_via, thread.first_answered_by = at, str(via), by
    thread.deadline_at = None
    thread.next_escalation_at = None
    seen_until = covers_until or at
    if thread.last_customer_at > seen_until:
        customer_wrote(thread, thread.last_customer_at, policy)
    return True


def close_thread(thread: ClockedThread) -> None:
    """Closed threads have no clock: nothing more is expected of staff."""
    thread.status = ThreadStatus.CLOSED
    thread.deadline_at = None
    thread.next_escalation_at = None


def reopen_thread(thread: ClockedThread, now: datetime, policy: ClockPolicy) -> None:
    """Start a new clock from `now`, as if the customer had just written again."""
    _start_new_clock(thread, now, reopened_deadline(now, policy) or first_deadline(now, policy), policy)


def _start_new_clock(thread: ClockedThread, started_at: datetime, deadline: datetime, policy: ClockPolicy) -> None:
    # A new clock number lets every escalation step fire once more, exactly once.
    thread.status = ThreadStatus.OPEN
    thread.clock += 1
    thread.clock_started_at = started_at
    thread.snooze_shift_s = 0
    thread.deadline_at = deadline
    thread.escalation_level = 0
    thread.next_escalation_at = next_step_at(thread, policy)


def take_thread(thread: ClockedThread, policy: ClockPolicy) -> None:
    """'I'll take it': no step of this clock goes out before the deadline; steps at or after it still do.

    The steps before the deadline count as dealt with (escalation_level), so the sweep, a
    restart and a reload (which recompute from the level) all skip them alike.
    """
    if thread.deadline_at is None:
        return
    times = step_times(clock_anchor(thread), policy.steps, policy.calendar, policy.holds)
    before = sum(1 for at in times if at < thread.deadline_at)
    thread.escalation_level = max(thread.escalation_level, before)
    thread.next_escalation_at = next_step_at(thread, policy)


def snooze_thread(thread: ClockedThread, now: datetime, until: datetime, policy: ClockPolicy) -> None:
    """Snooze until `until`: the clock's anchor moves on by (until - now), so the deadline and every
    pending step move with it and nothing fires before `until`; steps already sent stay sent."""
    shift = until - now
    if shift <= timedelta(0):
        return
    thread.snooze_shift_s = (thread.snooze_shift_s or 0) + math.ceil(shift.total_seconds())
    thread.snoozed_until, thread.snoozed_clock = until, thread.clock
    thread.deadline_at = clock_deadline(thread, policy)
    thread.next_escalation_at = next_step_at(thread, policy)
