"""The outbox's retry policy and give-up rules, and retry.backoff_s, with a controlled rng."""

import random
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from structlog.testing import capture_logs

from mailwatch.db.engine import Database
from mailwatch.db.models import OutboxMail
from mailwatch.errors import PermanentError, TransientError
from mailwatch.pipeline.outbox import (
    FAILED, LOST, PENDING, SENT, Claimed, Outbox, Result, RetryPolicy, announce, enqueue)
from mailwatch.retry import backoff_s

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class EdgeRng:
    """An rng whose uniform(a, b) returns one end, and remembers the bounds it was asked for."""

    def __init__(self, end: str) -> None:
        self.end = end
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append((a, b))
        return b if self.end == "high" else a


# --- retry.backoff_s --------------------------------------------------------------------


def test_backoff_doubles_from_initial_until_the_cap():
    # Without jitter's shrink: 1, 2, 4, 8 ... seconds, never above the maximum.
    rng = EdgeRng("high")
    assert [backoff_s(n, 1.0, 10.0, rng) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_before_a_first_attempt_is_the_initial_delay():
    # Attempt numbers start at 1; 0 (or less) is treated as the first.
    assert backoff_s(0, 3.0, 100.0, EdgeRng("high")) == 3.0
    assert backoff_s(-2, 3.0, 100.0, EdgeRng("high")) == 3.0


def test_backoff_jitter_is_half_to_all_of_the_delay():
    # Jitter draws 50-100 % of the capped delay, so clients that failed together spread out.
    low, high = EdgeRng("low"), EdgeRng("high")
    assert backoff_s(3, 1.0, 10.0, low) == 2.0 and backoff_s(3, 1.0, 10.0, high) == 4.0
    assert backoff_s(9, 1.0, 10.0, low) == 5.0  # the cap is applied before the jitter
    assert low.bounds == [(0.5, 1.0), (0.5, 1.0)]


def test_backoff_with_a_real_rng_stays_within_the_jitter_bounds():
    # Many seeded draws: each lies in [50 %, 100 %] of min(maximum, initial * 2^(n-1)).
    rng = random.Random(9)
    for attempt in range(1, 12):
        base = min(60.0, 0.5 * 2 ** (attempt - 1))
        delays = [backoff_s(attempt, 0.5, 60.0, rng) for _ in range(50)]
        assert all(0.5 * base <= d <= base for d in delays)
        assert max(delays) - min(delays) > 0.1 * base  # jittered, not constant


# --- RetryPolicy.delay ------------------------------------------------------------------


def test_policy_delay_grows_from_initial_and_caps_at_maximum():
    # The outbox waits initial, 2x, 4x ... after each failure, at most `maximum`.
    policy = RetryPolicy(initial=timedelta(seconds=30), maximum=timedelta(minutes=5))
    rng = EdgeRng("high")
    delays = [policy.delay(n, rng) for n in range(1, 7)]
    assert delays == [timedelta(seconds=s) for s in (30, 60, 120, 240, 300, 300)]


def test_policy_delay_is_jittered_down_to_half():
    # The same 50-100 % jitter as every retry loop.
    policy = RetryPolicy(initial=timedelta(seconds=30), maximum=timedelta(minutes=5))
    assert policy.delay(2, EdgeRng("low")) == timedelta(seconds=30)


# --- Outbox.result and its event -------------------------------------------------------

POLICY = RetryPolicy(initial=timedelta(seconds=30), maximum=timedelta(minutes=30), give_up_after=timedelta(days=2))


def outbox(rng=None) -> Outbox:
    """An outbox whose failure bookkeeping needs no database or SMTP."""
    return Outbox(db=None, connect=None, clock=lambda: T0, policy=POLICY, rng=rng or EdgeRng("high"))


def claimed(created_at: datetime = T0, attempts: int = 0) -> Claimed:
    return Claimed(id=7, kind="ack", recipient="pat@example.com", envelope_from="support@acme.example",
                   content=b"", attempts=attempts, created_at=created_at, thread_id=3,
                   message_id="<mailwatch.7@acme.example>", token="ours")


def test_a_transient_failure_defers_with_backoff_from_now():
    # Try again later: attempts counts up, next_attempt_at = now + delay(attempts).
    mail = claimed(attempts=2)
    now = T0 + timedelta(minutes=10)
    result = outbox().result(mail, TransientError("451 try later"), now)
    assert result == Result(PENDING, 3, "451 try later", now + timedelta(seconds=120))
    with capture_logs() as logs:
        announce(mail, PENDING, result)  # once committed
    # The log line is how an operator follows one mail: what, to whom, which try, when next, why.
    assert logs == [{"event": "mail_deferred", "log_level": "warning", "kind": "ack", "outbox_id": 7,
                     "recipient": "pat@example.com", "attempts": 3, "retry_at": result.retry_at.isoformat(),
                     "error": "451 try later"}]


def test_a_permanent_failure_fails_at_once_however_young():
    # A rejected recipient will not be accepted later: no retry, and next_attempt_at is left alone.
    mail = claimed()
    result = outbox().result(mail, PermanentError("550 no such user"), T0)
    assert result == Result(FAILED, 1, "550 no such user", None)
    with capture_logs() as logs:
        announce(mail, FAILED, result)  # once committed
    assert logs == [{"event": "mail_failed", "log_level": "error", "kind": "ack", "outbox_id": 7, "thread": 3,
                     "recipient": "pat@example.com", "attempts": 1, "error": "550 no such user"}]


def test_a_transient_failure_after_give_up_after_fails_for_good():
    # Mail that could not be sent for give_up_after (from when it was queued) is failed.
    at_limit = T0 + POLICY.give_up_after
    assert outbox().result(claimed(), TransientError("timeout"), at_limit).status == FAILED
    assert outbox().result(claimed(), TransientError("timeout"), at_limit - timedelta(seconds=1)).status == PENDING


def test_a_long_error_is_stored_cut_to_2000_characters():
    # The stored error is bounded: one server's essay must not bloat the table.
    assert outbox().result(claimed(), TransientError("x" * 5000), T0).last_error == "x" * 2000


def test_a_sent_mail_keeps_its_attempt_count():
    # Only failures count as attempts.
    assert outbox().result(claimed(attempts=2), None, T0) == Result(SENT, 2)


# --- Outbox.write, on a real SQLite database --------------------------------------------


def queue_one(db: Database) -> None:
    message = EmailMessage()
    message["Subject"], message["Message-ID"] = "Re: help", "<mailwatch.1@acme.example>"
    message.set_content("We got your mail.")
    with db.session() as session:
        assert enqueue(session, kind="ack", dedupe_key="ack:1", message=message, recipient="pat@example.com",
                       envelope_from="support@acme.example", now=T0)


def stored(db: Database) -> OutboxMail:
    with db.session() as session:
        (mail,) = session.query(OutboxMail).all()
        return mail


def test_recording_after_a_lost_lease_leaves_the_row_to_its_new_owner(db):
    # Our lease ran out and another sender claimed the row: our outcome is not written.
    box = Outbox(db, connect=None, clock=lambda: T0, policy=POLICY, rng=EdgeRng("high"))
    queue_one(db)
    (item,) = box.claim(10)
    with db.session() as session:
        taken = session.get(OutboxMail, item.id)
        taken.claimed_until, taken.claim_token = T0 + timedelta(minutes=9), "other"  # the other sender's claim
    with capture_logs() as logs:
        assert box.write([(item, None)], []).outcomes == {item.id: (LOST, None)}
    mail = stored(db)
    assert (mail.status, mail.sent_at, mail.claimed_until) == (PENDING, None, T0 + timedelta(minutes=9))
    assert [e["event"] for e in logs] == ["outbox_lease_lost"]


def test_recording_under_our_lease_marks_sent_and_releases_the_claim(db):
    # A mail the server accepted is sent, once, and no longer leased.
    box = Outbox(db, connect=None, clock=lambda: T0 + timedelta(seconds=5), policy=POLICY, rng=EdgeRng("high"))
    queue_one(db)
    (item,) = box.claim(10)
    assert box.write([(item, None)], []).outcomes == {item.id: (SENT, None)}
    mail = stored(db)
    assert (mail.status, mail.sent_at, mail.claimed_until, mail.attempts) == (SENT, T0 + timedelta(seconds=5), None, 0)


def test_recording_a_failure_under_our_lease_defers_and_releases_the_claim(db):
    # A deferred mail can be claimed again once next_attempt_at comes.
    box = Outbox(db, connect=None, clock=lambda: T0, policy=POLICY, rng=EdgeRng("high"))
    queue_one(db)
    (item,) = box.claim(10)
    assert box.write([(item, TransientError("421 busy"))], []).outcomes == {item.id: (PENDING, "421 busy")}
    mail = stored(db)
    assert (mail.status, mail.attempts, mail.claimed_until) == (PENDING, 1, None)
    assert mail.next_attempt_at == T0 + timedelta(seconds=30)
    assert box.claim(10) == []  # not due yet
