"""The one place a person changes a thread: from an action link's page or `mailwatch thread …`.

Every action is recorded (who, when, on which clock) in `thread_actions`. What an action does
to the clock is `sla`'s business; this module finds the thread, checks the link's clock
still holds, and writes the record. The caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from mailwatch.db.models import Thread, ThreadAction
from mailwatch.errors import MailwatchError, NoSuchThread
from mailwatch.policies import Policies
from mailwatch.sla import (
    LOCAL_COMMAND,
    AnsweredVia,
    ClockPolicy,
    ThreadStatus,
    close_thread,
    mark_answered,
    reopen_thread,
    snooze_thread,
    take_thread,
)

CLI_ACTOR = "cli:"  # the actor prefix of `mailwatch thread …`, followed by the local login
ACTION_LINK = "action-link"  # how an answer from a signed link was authenticated
NOTE_MAX = 2000  # a note is a line or two ("called back"); longer is not a note


class Action(StrEnum):
    """What a person can do to a thread."""

    ANSWERED = "answered"
    TAKE = "take"
    SNOOZE = "snooze"
    CLOSE = "close"
    REOPEN = "reopen"  # the CLI's `thread reopen`; the page offers no such button


class ActionRefused(MailwatchError):
    """The action cannot be applied (base class): the message says why, for a person."""


class StaleLink(ActionRefused):
    """The link was for an earlier clock: the customer wrote again (or it was reopened) since."""


class BadAction(ActionRefused):
    """The action's arguments do not make sense (a snooze into the past, a note too long)."""


@dataclass(frozen=True)
class ActionResult:
    """What became of an action: `changed` is False when the thread already was what was asked."""

    ticket: int
    action: Action
    changed: bool
    status: str
    detail: str


def apply_action(
    session: Session, policies: Policies, ticket: int, action: Action, actor: str, now: datetime, *,
    clock: int | None = None, note: str | None = None, until: datetime | None = None,
) -> ActionResult:
    """Apply `action` by `actor` (a link's recipient, or "cli:<login>") at `now`; the caller commits.

    `clock`: the clock the link was made for; None from the CLI, which acts on the thread as it is now.
    """
    thread = session.get(Thread, ticket)
    if thread is None:
        raise NoSuchThread(f"no thread with ticket {ticket}")
    if clock is not None and clock != thread.clock:
        raise StaleLink(f"ticket {ticket} has changed since this link was sent (the customer wrote again): "
                        "use the link in the newest escalation email")
    _check_arguments(action, now, note, until)
    changed, detail = _apply(thread, policies, action, actor, now, until)
    if changed:
        session.add(ThreadAction(thread_id=thread.id, clock=thread.clock,
                                 action=str(action), actor=actor, at=now, note=note or None, until=until))
    return ActionResult(ticket, action, changed, str(thread.status), detail)


def _check_arguments(action: Action, now: datetime, note: str | None, until: datetime | None) -> None:
    if note is not None and len(note) > NOTE_MAX:
        raise BadAction(f"the note is longer than {NOTE_MAX} characters")
    if action == Action.SNOOZE and (until is None or until <= now):
        raise BadAction("snooze needs a time in the future")
    if action != Action.SNOOZE and until is not None:
        raise BadAction(f"{action} takes no time")


def _apply(thread: Thread, policies: Policies, action: Action, actor: str, now: datetime,
           until: datetime | None) -> tuple[bool, str]:
    policy = policies.for_mailbox(thread.mailbox).clock
    if action == Action.ANSWERED:
        # The CLI's answer stays "via command" as before; a link's names its recipient.
        by, how = (None, LOCAL_COMMAND) if actor.startswith(CLI_ACTOR) else (actor, ACTION_LINK)
        changed = mark_answered(thread, now, via=AnsweredVia.COMMAND, by=by, policy=policy, how=how)
        return changed, "answered" if changed else "already answered or closed"
    if action == Action.CLOSE:
        if thread.status == ThreadStatus.CLOSED:
            return False, "already closed"
        close_thread(thread)
        return True, "closed"
    if action == Action.REOPEN:
        reopen_thread(thread, now, policy)
        return True, "reopened on a new clock"
    if thread.status != ThreadStatus.OPEN:
        return False, f"the thread is {thread.status}: nothing is waiting"
    if action == Action.TAKE:
        return _take(thread, policy, actor, now)
    assert until is not None  # _check_arguments
    snooze_thread(thread, now, until, policy)
    return True, "snoozed"


def _take(thread: Thread, policy: ClockPolicy, actor: str, now: datetime) -> tuple[bool, str]:
    if thread.taken_clock == thread.clock and thread.taken_by == actor:
        return False, f"already taken by {actor}"
    thread.taken_by, thread.taken_at, thread.taken_clock = actor, now, thread.clock
    take_thread(thread, policy)
    return True, f"taken by {actor}"
