"""The response clock: deadlines, reopening and escalation steps, with `now` passed in."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from mailwatch.db.models import Thread
from mailwatch.sla import ClockPolicy, due_step, first_deadline, reopened_deadline, time_left
from mailwatch.threads import close_thread, customer_wrote, mark_answered, reopen_thread

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
STEPS = [timedelta(hours=20), timedelta(hours=24)]


def open_thread_at(received_at: datetime, policy: ClockPolicy) -> Thread:
    return Thread(status="open", first_received_at=received_at, last_customer_at=received_at, clock=1,
                  clock_started_at=received_at, deadline_at=first_deadline(received_at, policy),
                  escalation_level=0, message_count=1)


def test_first_deadline_is_received_at_plus_first_response():
    # The promise runs from when the server received the mail.
    assert first_deadline(T0, ClockPolicy(DAY)) == T0 + DAY


def test_no_next_response_means_no_reopened_deadline():
    # Without sla.next_response a follow-up after an answer starts no clock.
    assert reopened_deadline(T0, ClockPolicy(DAY)) is None
    assert reopened_deadline(T0, ClockPolicy(DAY, timedelta(hours=8))) == T0 + timedelta(hours=8)


def test_time_left_turns_negative_after_the_deadline():
    # Overdue threads show how long they are overdue.
    assert time_left(T0 + DAY, T0 + DAY + timedelta(minutes=5)) == -timedelta(minutes=5)


def test_steps_fall_due_in_order_and_only_once():
    # A step is due once its `after` has elapsed on the clock and it was not sent yet.
    assert due_step(T0, T0 + timedelta(hours=19, minutes=59), STEPS, 0) == 0
    assert due_step(T0, T0 + timedelta(hours=20), STEPS, 0) == 1
    assert due_step(T0, T0 + timedelta(hours=21), STEPS, 1) == 0
    assert due_step(T0, T0 + timedelta(hours=25), STEPS, 1) == 2
    assert due_step(T0, T0 + timedelta(hours=25), STEPS, 2) == 0


def test_a_late_sweep_sends_the_highest_due_step():
    # After downtime, the lead gets the most urgent step, not a replay of every step.
    assert due_step(T0, T0 + timedelta(days=3), STEPS, 0) == 2


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)), st.integers(0, 2))
def test_due_step_never_goes_backwards(elapsed, sent):
    # Whatever the elapsed time, a due step is always above what was already sent.
    step = due_step(T0, T0 + elapsed, STEPS, sent)
    assert step == 0 or sent < step <= len(STEPS)


def test_staff_answer_stops_the_clock():
    # Answered threads have no deadline and remember how and when.
    thread = open_thread_at(T0, ClockPolicy(DAY))
    assert mark_answered(thread, T0 + timedelta(hours=2), via="staff-address", by="alice@acme.example")
    assert (thread.status, thread.deadline_at, thread.answered_via) == ("answered", None, "staff-address")
    assert not mark_answered(thread, T0 + timedelta(hours=3), via="flag", by=None)
    assert thread.answered_at == T0 + timedelta(hours=2)


def test_customer_follow_up_reopens_with_next_response_deadline():
    # A customer writing after an answer starts a new clock when next_response is set.
    policy = ClockPolicy(DAY, timedelta(hours=8))
    thread = open_thread_at(T0, policy)
    mark_answered(thread, T0 + timedelta(hours=1), via="staff-address", by=None)
    thread.escalation_level = 1
    customer_wrote(thread, T0 + timedelta(hours=5), policy)
    assert thread.status == "open" and thread.clock == 2
    assert thread.deadline_at == T0 + timedelta(hours=13)
    assert thread.escalation_level == 0


def test_customer_follow_up_on_open_thread_keeps_the_first_deadline():
    # The clock runs from the first unanswered message, not the latest one.
    policy = ClockPolicy(DAY, timedelta(hours=8))
    thread = open_thread_at(T0, policy)
    customer_wrote(thread, T0 + timedelta(hours=5), policy)
    assert thread.deadline_at == T0 + DAY and thread.clock == 1


def test_closed_threads_have_no_clock_until_reopened():
    # Closing stops the clock; reopening by command starts a fresh one from now.
    policy = ClockPolicy(DAY)
    thread = open_thread_at(T0, policy)
    close_thread(thread)
    assert (thread.status, thread.deadline_at) == ("closed", None)
    reopen_thread(thread, T0 + DAY, policy)
    assert thread.status == "open" and thread.deadline_at == T0 + 2 * DAY and thread.clock == 2
