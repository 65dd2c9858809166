"""The response clock: deadlines, reopening and escalation steps, with `now` passed in."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from mailwatch.db.models import Thread
from mailwatch.durations import rounded
from mailwatch.sla import (
    ClockPolicy,
    close_thread,
    customer_wrote,
    due_steps,
    first_deadline,
    human_time,
    mark_answered,
    next_escalation_at,
    reopen_thread,
    reopened_deadline,
    next_step_at,
    snooze_thread,
    take_thread,
    thread_due_steps,
)

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


def test_rounded_durations_read_well_either_side_of_the_deadline():
    # People see minutes, never microseconds, and the sign is theirs to add.
    assert rounded(timedelta(hours=23, minutes=59, seconds=59, microseconds=5)) == "23h 59m"
    assert rounded(-timedelta(minutes=5, seconds=3)) == "5m"
    assert rounded(timedelta(seconds=40)) == "under a minute"


def test_steps_fall_due_in_order_and_only_once():
    # A step is due once its `after` has elapsed on the clock and it was not sent yet.
    assert list(due_steps(T0, T0 + timedelta(hours=19, minutes=59), STEPS, 0)) == []
    assert list(due_steps(T0, T0 + timedelta(hours=20), STEPS, 0)) == [1]
    assert list(due_steps(T0, T0 + timedelta(hours=21), STEPS, 1)) == []
    assert list(due_steps(T0, T0 + timedelta(hours=25), STEPS, 1)) == [2]
    assert list(due_steps(T0, T0 + timedelta(hours=25), STEPS, 2)) == []


def test_a_late_sweep_sends_every_missed_step():
    # After downtime, each step's recipients still hear: none is skipped.
    assert list(due_steps(T0, T0 + timedelta(days=3), STEPS, 0)) == [1, 2]


def test_next_escalation_is_the_next_unsent_step():
    # The stored due time points at the next step, and at nothing once all were sent.
    assert next_escalation_at(T0, STEPS, 0) == T0 + timedelta(hours=20)
    assert next_escalation_at(T0, STEPS, 1) == T0 + timedelta(hours=24)
    assert next_escalation_at(T0, STEPS, 2) is None
    assert next_escalation_at(T0, (), 0) is None


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)), st.integers(0, 2))
def test_due_steps_never_repeat_a_sent_step(elapsed, sent):
    # Whatever the elapsed time, due steps are above what was already sent, in order.
    steps = list(due_steps(T0, T0 + elapsed, STEPS, sent))
    assert steps == sorted(steps) and all(sent < step <= len(STEPS) for step in steps)


def test_staff_answer_stops_the_clock():
    # Answered threads have no deadline and remember how and when.
    thread = open_thread_at(T0, ClockPolicy(DAY))
    assert mark_answered(thread, T0 + timedelta(hours=2), via="staff-address", by="alice@acme.example",
                         policy=ClockPolicy(DAY))
    assert (thread.status, thread.deadline_at, thread.answered_via) == ("answered", None, "staff-address")
    assert not mark_answered(thread, T0 + timedelta(hours=3), via="flag", by=None, policy=ClockPolicy(DAY))
    assert thread.answered_at == T0 + timedelta(hours=2)


def test_customer_follow_up_reopens_with_next_response_deadline():
    # A customer writing after an answer starts a new clock when next_response is set.
    policy = ClockPolicy(DAY, timedelta(hours=8))
    thread = open_thread_at(T0, policy)
    mark_answered(thread, T0 + timedelta(hours=1), via="staff-address", by=None, policy=policy)
    thread.escalation_level = 1
    customer_wrote(thread, T0 + timedelta(hours=5), policy)
    assert thread.status == "open" and thread.clock == 2
    assert thread.deadline_at == T0 + timedelta(hours=13)
    assert thread.escalation_level == 0


def test_answer_older_than_the_latest_customer_message_leaves_that_message_waiting():
    # A Sent-folder reply read after the customer's next message answers only what it saw.
    policy = ClockPolicy(DAY, timedelta(hours=8))
    thread = open_thread_at(T0, policy)
    customer_wrote(thread, T0 + timedelta(hours=3), policy)
    assert mark_answered(thread, T0 + timedelta(hours=2), via="sent-folder", by=None, policy=policy)
    assert (thread.status, thread.clock, thread.answered_at) == ("open", 2, T0 + timedelta(hours=2))
    assert thread.deadline_at == T0 + timedelta(hours=11)


def test_flag_on_the_latest_message_answers_everything_before_it():
    # \\Answered on the newest customer message: nothing is left waiting.
    policy = ClockPolicy(DAY, timedelta(hours=8))
    thread = open_thread_at(T0, policy)
    customer_wrote(thread, T0 + timedelta(hours=3), policy)
    mark_answered(thread, T0 + timedelta(hours=5), via="flag", by=None, policy=policy,
                  covers_until=T0 + timedelta(hours=3))
    assert thread.status == "answered"


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


BERLIN = ZoneInfo("Europe/Berlin")


def test_human_times_name_their_zone_in_winter_and_summer():
    # People read local time with its abbreviation; storage stays UTC.
    assert human_time(datetime(2026, 1, 5, 8, 0, tzinfo=UTC), BERLIN) == "Monday 5 January 2026, 09:00 CET"
    assert human_time(datetime(2026, 7, 5, 8, 0, tzinfo=UTC), BERLIN) == "Sunday 5 July 2026, 10:00 CEST"


def test_deadline_across_spring_forward_is_24_elapsed_hours():
    # The clocks jump an hour on 29 March 2026: the promise is 24 real hours, shown as 14:00 local.
    received = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    deadline = first_deadline(received, ClockPolicy(DAY))
    assert deadline - received == DAY
    assert human_time(received, BERLIN) == "Saturday 28 March 2026, 13:00 CET"
    assert human_time(deadline, BERLIN) == "Sunday 29 March 2026, 14:00 CEST"


def test_deadline_across_fall_back_is_24_elapsed_hours():
    # On 25 October 2026 the hour repeats: the deadline is an hour earlier on the wall clock.
    received = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    assert human_time(received, BERLIN) == "Saturday 24 October 2026, 14:00 CEST"
    assert human_time(first_deadline(received, ClockPolicy(DAY)), BERLIN) == "Sunday 25 October 2026, 13:00 CET"


def test_escalation_steps_count_elapsed_time_not_wall_clock_across_dst():
    # A step 20 h after a message received before the change is due 20 real hours later.
    received = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)
    assert list(due_steps(received, received + timedelta(hours=20), STEPS, 0)) == [1]
    assert list(due_steps(received, received + timedelta(hours=19, minutes=59), STEPS, 0)) == []


def test_reopening_keeps_the_first_response():
    # Close and reopen start a new clock; the first answer's time stays what the report measures.
    policy = ClockPolicy(DAY)
    thread = open_thread_at(T0, policy)
    mark_answered(thread, T0 + timedelta(hours=2), via="staff", by="ann@acme.example", policy=policy)
    close_thread(thread)
    reopen_thread(thread, T0 + timedelta(days=3), policy)
    mark_answered(thread, T0 + timedelta(days=4), via="sent-folder", by="bob@acme.example", policy=policy)
    assert (thread.first_answered_at, thread.first_answered_by) == (T0 + timedelta(hours=2), "ann@acme.example")
    assert thread.answered_at == T0 + timedelta(days=4)


# "I'll take it" and "snooze": what a person's action does to the steps still to come.

TAKE_POLICY = ClockPolicy(DAY, steps=(timedelta(hours=4), timedelta(hours=20), timedelta(hours=24),
                                      timedelta(hours=30)))


def test_taking_a_thread_skips_the_steps_before_the_deadline_only():
    thread = open_thread_at(T0, TAKE_POLICY)
    take_thread(thread, TAKE_POLICY)
    # 4h and 20h are before the 24h deadline: dealt with; 24h (at the deadline) still goes out.
    assert thread.escalation_level == 2
    assert thread.next_escalation_at == T0 + timedelta(hours=24)
    assert list(due_steps(T0, T0 + timedelta(hours=23), TAKE_POLICY.steps, thread.escalation_level)) == []
    assert list(due_steps(T0, T0 + timedelta(hours=24), TAKE_POLICY.steps, thread.escalation_level)) == [3]


def test_taking_never_unsends_a_step():
    thread = open_thread_at(T0, TAKE_POLICY)
    thread.escalation_level = 3
    take_thread(thread, TAKE_POLICY)
    assert thread.escalation_level == 3
    assert thread.next_escalation_at == T0 + timedelta(hours=30)


def test_snoozing_moves_the_deadline_and_pending_steps_past_the_snooze():
    thread = open_thread_at(T0, TAKE_POLICY)
    thread.escalation_level = 1  # the 4h step went out
    now, until = T0 + timedelta(hours=5), T0 + timedelta(hours=29)
    snooze_thread(thread, now, until, TAKE_POLICY)
    shift = until - now
    assert thread.deadline_at == T0 + DAY + shift
    assert thread.next_escalation_at == T0 + timedelta(hours=20) + shift
    assert thread.escalation_level == 1


@given(now_h=st.integers(0, 40), until_h=st.integers(1, 200), level=st.integers(0, 4))
def test_nothing_fires_before_the_snooze_ends(now_h, until_h, level):
    # The sweep sends only threads whose next_escalation_at has come: it must not come before `until`.
    thread = open_thread_at(T0, TAKE_POLICY)
    thread.escalation_level = level
    now = T0 + timedelta(hours=now_h)
    until = now + timedelta(hours=until_h)
    snooze_thread(thread, now, until, TAKE_POLICY)
    assert thread.deadline_at == T0 + DAY + (until - now)
    if level == len(TAKE_POLICY.steps):
        assert thread.next_escalation_at is None
    else:
        assert thread.next_escalation_at >= until


def test_a_snooze_moves_the_steps_but_never_when_the_customer_began_to_wait():
    # The digest's "received" time, the metrics' oldest wait and the report's backlog read clock_started_at.
    thread = open_thread_at(T0, TAKE_POLICY)
    snooze_thread(thread, T0 + timedelta(hours=1), T0 + timedelta(hours=10), TAKE_POLICY)
    assert thread.clock_started_at == T0
    assert thread.deadline_at == T0 + DAY + timedelta(hours=9)


@given(overdue_h=st.integers(0, 30), snooze_h=st.integers(1, 100))
def test_a_step_overdue_when_snoozed_waits_for_the_snooze_even_after_a_reload(overdue_h, snooze_h):
    # A reload recomputes next_escalation_at from the stored facts: the snooze must survive that.
    thread = open_thread_at(T0, TAKE_POLICY)
    now = T0 + timedelta(hours=4 + overdue_h)  # the 4h step is due, the sweep has not sent it yet
    until = now + timedelta(hours=snooze_h)
    snooze_thread(thread, now, until, TAKE_POLICY)
    thread.next_escalation_at = None  # what a reload throws away
    assert next_step_at(thread, TAKE_POLICY) >= until
    assert list(thread_due_steps(thread, until - timedelta(seconds=1), TAKE_POLICY)) == []
    assert list(thread_due_steps(thread, until + timedelta(hours=200), TAKE_POLICY)) == [1, 2, 3, 4]
