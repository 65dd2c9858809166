"""sla.py's clock transitions, on Thread objects without a session: every field each rule sets."""

from datetime import UTC, datetime, timedelta

import pytest

from mailwatch.db.models import Thread
from mailwatch.mail.rules import Category, Verdict
from mailwatch.sla import (
    ClockPolicy,
    apply_message,
    close_thread,
    customer_wrote,
    first_deadline,
    mark_answered,
    next_escalation_at,
    reopen_thread,
    skip_escalations,
    start_first_clock,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
STEPS = (timedelta(hours=20), timedelta(hours=24))
# Both deadlines set, with escalation steps: every field of a new clock is observable.
POLICY = ClockPolicy(timedelta(hours=24), timedelta(hours=8), STEPS)
NO_NEXT = ClockPolicy(timedelta(hours=24), None, STEPS)


def thread_at(received_at: datetime = T0, policy: ClockPolicy = POLICY) -> Thread:
    """An open thread on its first clock, as open_thread makes it."""
    return Thread(status="open", first_received_at=received_at, last_customer_at=received_at, clock=1,
                  clock_started_at=received_at, deadline_at=first_deadline(received_at, policy),
                  escalation_level=0, next_escalation_at=next_escalation_at(received_at, policy.steps, 0),
                  message_count=1)


def test_a_new_conversation_starts_clock_one_at_its_first_message():
    # Clock 1 runs from the customer's message: its deadline, its first step, nothing sent yet.
    thread = Thread(status="answered", clock=7, escalation_level=2, message_count=0)
    start_first_clock(thread, T0, POLICY)
    assert clock_fields(thread) == clock_fields(thread_at(T0, POLICY))
    assert (thread.status, thread.clock, thread.clock_started_at, thread.last_customer_at) == ("open", 1, T0, T0)
    assert (thread.deadline_at, thread.escalation_level) == (T0 + timedelta(hours=24), 0)
    assert thread.next_escalation_at == T0 + timedelta(hours=20)


def answered_thread(policy: ClockPolicy = POLICY) -> Thread:
    thread = thread_at(policy=policy)
    thread.escalation_level = 2
    assert mark_answered(thread, T0 + HOUR, via="staff-address", by="alice@acme.example", policy=policy)
    return thread


def clock_fields(thread: Thread) -> tuple:
    return (thread.status, thread.clock, thread.clock_started_at, thread.deadline_at,
            thread.escalation_level, thread.next_escalation_at)


def verdict(category: Category) -> Verdict:
    return Verdict(category, "test")


# --- mark_answered ----------------------------------------------------------------------


def test_an_answer_records_who_how_and_when_and_clears_every_due_time():
    # An answered thread has no deadline and no pending escalation, and names its answerer.
    thread = thread_at()
    assert thread.next_escalation_at is not None
    assert mark_answered(thread, T0 + HOUR, via="staff-address", by="alice@acme.example", policy=POLICY)
    assert (thread.status, thread.answered_at, thread.answered_via, thread.answered_by) == (
        "answered", T0 + HOUR, "staff-address", "alice@acme.example")
    assert thread.deadline_at is None and thread.next_escalation_at is None


def test_an_answer_to_a_closed_thread_changes_nothing():
    # Only an open clock can be stopped.
    thread = thread_at()
    close_thread(thread)
    assert not mark_answered(thread, T0 + HOUR, via="flag", by=None, policy=POLICY)
    assert thread.status == "closed" and thread.answered_at is None


def test_a_flag_on_an_earlier_message_leaves_the_later_customer_message_waiting():
    # \Answered answers the flagged message and everything before it; a later one starts a new clock.
    thread = thread_at()
    customer_wrote(thread, T0 + 3 * HOUR, POLICY)
    # The flag is first seen at T0+5h, on the message received at T0.
    assert mark_answered(thread, T0 + 5 * HOUR, via="flag", by=None, policy=POLICY, covers_until=T0)
    assert thread.answered_via == "flag"
    assert clock_fields(thread) == ("open", 2, T0 + 3 * HOUR, T0 + 11 * HOUR, 0, T0 + 3 * HOUR + STEPS[0])


def test_a_flag_on_the_latest_message_answers_the_thread_even_when_seen_late():
    # covers_until at the newest customer message: nothing is left waiting.
    thread = thread_at()
    customer_wrote(thread, T0 + 3 * HOUR, POLICY)
    mark_answered(thread, T0 + 5 * HOUR, via="flag", by=None, policy=POLICY, covers_until=T0 + 3 * HOUR)
    assert (thread.status, thread.clock, thread.deadline_at) == ("answered", 1, None)


def test_an_answer_covers_a_customer_message_received_at_the_same_instant():
    # "After the answer" is strictly later: a tie counts as seen.
    thread = thread_at()
    customer_wrote(thread, T0 + 2 * HOUR, POLICY)
    mark_answered(thread, T0 + 2 * HOUR, via="sent-folder", by=None, policy=POLICY)
    assert thread.status == "answered"


# --- customer_wrote ---------------------------------------------------------------------


def test_a_follow_up_after_an_answer_starts_a_full_new_clock():
    # New clock: next number, started at the message, next_response deadline, steps again from 1.
    thread = answered_thread()
    customer_wrote(thread, T0 + 5 * HOUR, POLICY)
    assert clock_fields(thread) == ("open", 2, T0 + 5 * HOUR, T0 + 13 * HOUR, 0, T0 + 5 * HOUR + STEPS[0])
    assert thread.last_customer_at == T0 + 5 * HOUR


def test_without_next_response_a_follow_up_after_an_answer_starts_no_clock():
    # sla.next_response unset: an answered thread stays answered whatever the customer adds.
    thread = answered_thread(NO_NEXT)
    customer_wrote(thread, T0 + 5 * HOUR, NO_NEXT)
    assert (thread.status, thread.clock, thread.deadline_at, thread.next_escalation_at) == ("answered", 1, None, None)
    assert thread.last_customer_at == T0 + 5 * HOUR


def test_a_customer_message_found_late_does_not_move_last_customer_at_back():
    # last_customer_at is the newest customer message, in whatever order they are read.
    thread = thread_at()
    customer_wrote(thread, T0 + 5 * HOUR, POLICY)
    customer_wrote(thread, T0 + 2 * HOUR, POLICY)
    assert thread.last_customer_at == T0 + 5 * HOUR
    assert clock_fields(thread)[:3] == ("open", 1, T0)


def test_a_follow_up_into_a_closed_thread_reopens_it():
    # Closed is not "answered forever": a customer writing again gets a new clock.
    thread = thread_at()
    close_thread(thread)
    customer_wrote(thread, T0 + 5 * HOUR, POLICY)
    assert clock_fields(thread) == ("open", 2, T0 + 5 * HOUR, T0 + 13 * HOUR, 0, T0 + 5 * HOUR + STEPS[0])


# --- close_thread / reopen_thread -------------------------------------------------------


def test_closing_clears_the_deadline_and_the_next_escalation():
    # Nothing more is expected of staff, so nothing may fall due.
    thread = thread_at()
    close_thread(thread)
    assert (thread.status, thread.deadline_at, thread.next_escalation_at) == ("closed", None, None)


def test_reopening_by_command_uses_next_response_from_now():
    # `mailwatch reopen` starts a clock as if the customer had just written.
    thread = answered_thread()
    reopen_thread(thread, T0 + 30 * HOUR, POLICY)
    assert clock_fields(thread) == ("open", 2, T0 + 30 * HOUR, T0 + 38 * HOUR, 0, T0 + 30 * HOUR + STEPS[0])


def test_reopening_without_next_response_falls_back_to_first_response():
    # No next_response: the reopened thread still gets a deadline, the first-response one.
    thread = answered_thread(NO_NEXT)
    reopen_thread(thread, T0 + 30 * HOUR, NO_NEXT)
    assert clock_fields(thread) == ("open", 2, T0 + 30 * HOUR, T0 + 54 * HOUR, 0, T0 + 30 * HOUR + STEPS[0])


def test_a_new_clock_without_escalation_steps_has_no_next_escalation():
    # No steps configured: nothing is ever due.
    policy = ClockPolicy(timedelta(hours=24), timedelta(hours=8))
    thread = answered_thread(policy)
    reopen_thread(thread, T0 + 30 * HOUR, policy)
    assert thread.status == "open" and thread.next_escalation_at is None


# --- skip_escalations -------------------------------------------------------------------


def test_skipping_escalations_counts_every_step_as_sent():
    # Mail found on a first start escalates to nobody: level at the last step, nothing due.
    thread = thread_at()
    skip_escalations(thread, POLICY)
    assert (thread.escalation_level, thread.next_escalation_at) == (len(STEPS), None)
    assert thread.status == "open" and thread.deadline_at == T0 + timedelta(hours=24)


# --- apply_message ----------------------------------------------------------------------


def test_every_message_counts_whatever_its_category():
    # message_count is the number of messages in the thread, machines included.
    thread = thread_at()
    apply_message(thread, verdict(Category.AUTO_REPLY), "robot@example.com", T0 + HOUR, POLICY)
    apply_message(thread, verdict(Category.BOUNCE), None, T0 + HOUR, POLICY)
    assert thread.message_count == 3 and thread.status == "open"


@pytest.mark.parametrize("category, via", [(Category.STAFF, "staff-address"), (Category.OWN_ADDRESS, "own-address")])
def test_staff_or_own_address_mail_in_the_inbox_answers_the_thread(category, via):
    # An authenticated reply from staff, or from the shared address itself, stops the clock.
    thread = thread_at()
    apply_message(thread, verdict(category), "alice@acme.example", T0 + HOUR, POLICY, staff_authenticated="dmarc")
    assert (thread.status, thread.answered_via, thread.answered_by, thread.answered_at, thread.answered_auth) == (
        "answered", via, "alice@acme.example", T0 + HOUR, "dmarc")


@pytest.mark.parametrize("category", [Category.STAFF, Category.OWN_ADDRESS])
def test_unauthenticated_staff_or_own_address_mail_answers_nothing(category):
    # A staff From is only a claim until a trusted server authenticated it (issue 10).
    thread = thread_at()
    apply_message(thread, verdict(category), "alice@acme.example", T0 + HOUR, POLICY)
    assert thread.status == "open" and thread.answered_at is None and thread.message_count == 2


@pytest.mark.parametrize("category", [Category.AUTO_REPLY, Category.OUT_OF_OFFICE, Category.OWN_MESSAGE,
                                      Category.MAILING_LIST, Category.BOUNCE])
def test_machine_and_own_mail_in_the_inbox_answers_nothing(category):
    # An out-of-office or mailwatch's own ack is no answer.
    thread = thread_at()
    apply_message(thread, verdict(category), "x@acme.example", T0 + HOUR, POLICY)
    assert thread.status == "open" and thread.answered_at is None


def test_a_customer_message_in_the_inbox_reopens_an_answered_thread():
    # The customer writing again after an answer is a follow-up.
    thread = answered_thread()
    apply_message(thread, verdict(Category.CUSTOMER), "pat@example.com", T0 + 5 * HOUR, POLICY)
    assert clock_fields(thread)[:3] == ("open", 2, T0 + 5 * HOUR)
    assert thread.last_customer_at == T0 + 5 * HOUR


@pytest.mark.parametrize("category", [Category.STAFF, Category.OWN_ADDRESS, Category.CUSTOMER])
def test_a_persons_mail_in_the_sent_folder_is_our_answer(category):
    # Whatever its From says, a person's mail in Sent answers the thread.
    thread = thread_at()
    apply_message(thread, verdict(category), "bob@acme.example", T0 + HOUR, POLICY, in_sent_folder=True)
    assert (thread.status, thread.answered_via, thread.answered_by) == ("answered", "sent-folder", "bob@acme.example")
    assert thread.message_count == 2


@pytest.mark.parametrize("category", [Category.AUTO_REPLY, Category.OWN_MESSAGE])
def test_an_auto_reply_or_our_own_ack_in_the_sent_folder_answers_nothing(category):
    # Sent also holds machine mail: that is no person's answer, and no customer follow-up either.
    thread = answered_thread()
    apply_message(thread, verdict(category), "support@acme.example", T0 + 5 * HOUR, POLICY, in_sent_folder=True)
    assert (thread.status, thread.clock, thread.last_customer_at) == ("answered", 1, T0)


@pytest.mark.parametrize("category, in_sent_folder", [(Category.STAFF, False), (Category.CUSTOMER, True)])
def test_a_reply_older_than_the_latest_customer_message_answers_only_what_it_saw(category, in_sent_folder):
    # A reply read after the customer's next message (e.g. from Sent) leaves that message on a new clock.
    thread = thread_at()
    customer_wrote(thread, T0 + 3 * HOUR, POLICY)
    apply_message(thread, verdict(category), "bob@acme.example", T0 + 2 * HOUR, POLICY, in_sent_folder=in_sent_folder,
                  staff_authenticated=None if in_sent_folder else "dkim")
    assert thread.answered_at == T0 + 2 * HOUR
    assert clock_fields(thread) == ("open", 2, T0 + 3 * HOUR, T0 + 11 * HOUR, 0, T0 + 3 * HOUR + STEPS[0])


def test_a_customer_address_in_the_sent_folder_is_not_a_customer_follow_up():
    # Mail in Sent was sent by us, even when its From is the customer's (a forwarded copy).
    thread = answered_thread()
    apply_message(thread, verdict(Category.CUSTOMER), "pat@example.com", T0 + 5 * HOUR, POLICY, in_sent_folder=True)
    assert (thread.status, thread.clock, thread.last_customer_at) == ("answered", 1, T0)
