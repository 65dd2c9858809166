"""watcher.py's retry rules: a refused login waits AUTH_RETRY_S, other failures back off, capped.

Driven with fake hooks and an Event that records how long the watcher would wait,
so nothing sleeps.
"""

import asyncio
import random
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from structlog.testing import capture_logs

from mailwatch.daemon.watchers import (
    AUTH_RETRY_S,
    IDLE_LIMIT_S,
    RECONNECT_MAX_S,
    RETRY_INITIAL_S,
    RETRY_MAX_S,
    MailboxWatcher,
    SentWatcher,
    WatcherHooks,
    Watchers,
)
from mailwatch.errors import AuthenticationError, SignInRequired, TransientError
from mailwatch.pipeline.sync import FolderReport

def fake_mailbox(name: str = "support", idle: bool = True, poll_interval: timedelta = timedelta(seconds=60),
                 sent_folder: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(name=name, folder="INBOX", sent_folder=sent_folder, idle=idle, poll_interval=poll_interval)


MAILBOX = fake_mailbox()
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # what the watcher's clock says


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are remembered, in seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(0)


class FakeConnection:
    """A connection that survives `good_syncs` syncs, then drops."""

    def __init__(self, idle: bool = False, good_syncs: int = 1, announced: tuple[bool, ...] = ()) -> None:
        self.idle = idle
        self.good_syncs = good_syncs
        self.announced = list(announced)  # per sync: did the server announce new mail during it
        self.closed = False
        self.idle_waits: list[float] = []

    def supports_idle(self) -> bool:
        return self.idle

    def idle_wait(self, timeout_s: float, stop: threading.Event) -> None:
        self.idle_waits.append(timeout_s)

    def announced_new_mail(self) -> bool:
        return self.announced.pop(0) if self.announced else False

    def credentials_expiring(self, now) -> bool:
        return False  # a password login: it never expires

    def close(self) -> None:
        self.closed = True


class Script:
    """Hooks that play a list of connect() outcomes (an exception to raise, or a connection), then stop."""

    def __init__(self, outcomes: list) -> None:
        self.outcomes = list(outcomes)
        self.failures: list[tuple[str, int]] = []
        self.reports: list[FolderReport] = []
        self.watcher: MailboxWatcher | None = None

    def connect(self, mailbox):
        if not self.outcomes:
            self.watcher.stop()
            raise TransientError("script ended")
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def sync(self, connection, mailbox, stop):
        if connection.good_syncs == 0:
            raise TransientError("connection dropped")
        connection.good_syncs -= 1
        return FolderReport(mailbox.name, "INBOX")

    def failed(self, mailbox, exc, attempt):
        self.failures.append((str(exc), attempt))

    def hooks(self) -> WatcherHooks:
        return WatcherHooks(connect=self.connect, sync=self.sync, synced=lambda m, r: self.reports.append(r),
                            failed=self.failed, clock=lambda: T0)


def watcher_for(script: Script, rng=None, mailbox=MAILBOX) -> tuple[MailboxWatcher, RecordingStop]:
    watcher = MailboxWatcher(mailbox, script.hooks(), rng=rng or random.Random(4))
    watcher.stopping = stop = RecordingStop()
    script.watcher = watcher
    return watcher, stop


def test_a_refused_login_waits_auth_retry_s_every_time():
    # A wrong password does not fix itself: no fast retries, however many attempts.
    script = Script([AuthenticationError("535 no")] * 4)
    watcher, stop = watcher_for(script)
    watcher.run()
    assert stop.waits[:4] == [AUTH_RETRY_S] * 4
    assert [attempt for _, attempt in script.failures[:4]] == [1, 2, 3, 4]


def test_connection_failures_back_off_exponentially_with_jitter_up_to_a_few_seconds():
    # 1 s, 2 s, 4 s, then never above RECONNECT_MAX_S, each jittered to 50-100 %.
    script = Script([TransientError("connection refused")] * 12)
    watcher, stop = watcher_for(script, random.Random(11))
    watcher.run()
    waits = stop.waits[:12]
    for attempt, wait in enumerate(waits, start=1):
        base = min(RECONNECT_MAX_S, RETRY_INITIAL_S * 2 ** (attempt - 1))
        assert 0.5 * base <= wait <= base, (attempt, wait)
    assert max(waits) <= RECONNECT_MAX_S and waits[-1] >= RECONNECT_MAX_S / 2


def test_a_crash_of_our_own_backs_off_to_minutes():
    # A bug does not heal by retrying every few seconds: it backs off up to RETRY_MAX_S.
    script = Script([RuntimeError("bug")] * 12)
    watcher, stop = watcher_for(script, random.Random(11))
    with capture_logs():
        watcher.run()
    waits = stop.waits[:12]
    assert max(waits) <= RETRY_MAX_S and waits[-1] >= RETRY_MAX_S / 2


class EdgeRng(random.Random):
    """Jitter always at one end of its range."""

    def __init__(self, share: float) -> None:
        super().__init__(0)
        self.share = share

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.share


class Outage:
    """A server down until `back_at_s` on a virtual clock that the watcher's waits advance."""

    def __init__(self, back_at_s: float) -> None:
        self.back_at_s = back_at_s
        self.now_s = 0.0
        self.attempts_while_down = 0
        self.reconnected_at_s: float | None = None

    def connect(self, mailbox):
        if self.now_s < self.back_at_s:
            self.attempts_while_down += 1
            raise TransientError("IMAP connection to 127.0.0.1:143 failed: connection refused")
        self.reconnected_at_s = self.now_s
        self.watcher.stop()
        return FakeConnection()


def ride_out(outage: Outage, rng: random.Random) -> None:
    hooks = WatcherHooks(connect=outage.connect, sync=lambda c, m, s: FolderReport(m.name, "INBOX"),
                         synced=lambda m, r: None, failed=lambda m, e, a: None, clock=lambda: T0)
    watcher = MailboxWatcher(MAILBOX, hooks, rng=rng)
    outage.watcher = watcher

    class AdvancingStop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            outage.now_s += timeout or 0.0
            return super().wait(0)

    watcher.stopping = AdvancingStop()
    with capture_logs():
        watcher.run()


def test_after_a_ten_minute_outage_the_server_is_in_use_again_within_five_seconds():
    # Issue 18: "server back -> reconnected" under 5 s for outages up to 10 minutes,
    # without hammering a server that stays down (at most one attempt per 2 s on average).
    for back_at_s in (35.0, 120.0, 600.0):
        for rng in (EdgeRng(0.0), EdgeRng(1.0), random.Random(1), random.Random(2)):
            outage = Outage(back_at_s)
            ride_out(outage, rng)
            lag_s = outage.reconnected_at_s - back_at_s
            assert 0 <= lag_s < 5.0, (back_at_s, lag_s)
            assert outage.attempts_while_down <= back_at_s / 2 + 10, (back_at_s, outage.attempts_while_down)


def test_backoff_is_deterministic_for_a_seeded_rng():
    # The jitter comes from the watcher's rng: the same seed gives the same waits.
    runs = []
    for _ in range(2):
        script = Script([TransientError("refused")] * 5)
        watcher, stop = watcher_for(script, random.Random(7))
        watcher.run()
        runs.append(stop.waits[:5])
    assert runs[0] == runs[1] and len(set(runs[0])) == 5


def test_a_good_sync_resets_the_backoff():
    # Only a good sync proves the trouble is over: the next failure is attempt 1 again.
    script = Script([TransientError("refused"), TransientError("refused"), FakeConnection(), TransientError("refused")])
    watcher, stop = watcher_for(script)
    watcher.run()
    assert [attempt for _, attempt in script.failures] == [1, 2, 1, 2, 3]
    assert [error for error, _ in script.failures][2] == "connection dropped"
    # Waits: two backoffs, one poll interval, then backoff from attempt 1 again.
    assert stop.waits[2] == 60.0 and stop.waits[3] <= RETRY_INITIAL_S and len(script.reports) == 1


def test_a_connection_that_drops_is_closed_before_reconnecting():
    # A dropped connection is closed, and the drop counts as a failure.
    first = FakeConnection(good_syncs=0)
    script = Script([first])
    watcher, _ = watcher_for(script)
    watcher.run()
    assert first.closed and script.failures[0] == ("connection dropped", 1)


def test_idle_is_used_when_offered_and_renewed_every_poll_interval():
    # With IDLE the watcher waits in IDLE for poll_interval after each sync, not in a sleep.
    connection = FakeConnection(idle=True, good_syncs=3)
    watcher, stop = watcher_for(Script([connection]))
    watcher.run()
    assert connection.idle_waits == [60.0, 60.0, 60.0] and 60.0 not in stop.waits


def test_mail_announced_during_a_sync_is_synced_at_once_not_after_idling():
    # A "* N EXISTS" seen during the sync: sync again straight away; IDLE would not repeat it.
    connection = FakeConnection(idle=True, good_syncs=3, announced=(True, False, False))
    watcher, stop = watcher_for(Script([connection]))
    watcher.run()
    assert len(connection.idle_waits) == 2  # three syncs, the first two back to back


def test_idle_is_renewed_within_29_minutes_however_long_poll_interval_is():
    # RFC 2177: a server may drop a client idle for 30 minutes, so one IDLE never lasts longer.
    connection = FakeConnection(idle=True, good_syncs=1)
    watcher, _ = watcher_for(Script([connection]), mailbox=fake_mailbox(poll_interval=timedelta(hours=2)))
    watcher.run()
    assert connection.idle_waits == [IDLE_LIMIT_S] and IDLE_LIMIT_S == 29 * 60


def test_without_idle_the_watcher_polls_every_poll_interval():
    # mailbox.idle off (or a server without IDLE): sync, sleep poll_interval, sync again.
    for mailbox, connection in ((fake_mailbox("s", idle=False, poll_interval=timedelta(seconds=30)),
                                 FakeConnection(idle=True, good_syncs=2)),
                                (fake_mailbox("s", idle=True, poll_interval=timedelta(seconds=30)),
                                 FakeConnection(idle=False, good_syncs=2))):
        watcher, stop = watcher_for(Script([connection]), mailbox=mailbox)
        watcher.run()
        assert connection.idle_waits == [] and stop.waits[:2] == [30.0, 30.0]


def test_a_crash_that_is_not_transient_is_logged_with_its_traceback():
    # Unexpected errors are retried too, but logged as a crash; transient ones only as a retry.
    script = Script([ValueError("bug"), TransientError("refused")])
    watcher, _ = watcher_for(script)
    with capture_logs() as logs:
        watcher.run()
    events = [(e["event"], e.get("error")) for e in logs if e["event"] in ("mailbox_watch_crashed", "mailbox_retry")]
    assert events[:3] == [("mailbox_watch_crashed", None), ("mailbox_retry", "bug"), ("mailbox_retry", "refused")]
    (crash,) = [e for e in logs if e["event"] == "mailbox_watch_crashed"]
    assert isinstance(crash["exc_info"], ValueError) and crash["log_level"] == "error"


def test_a_sign_in_that_needs_a_person_is_looked_at_again_every_poll_interval():
    # The refusal is remembered (no provider request), so a new `mailwatch login` is found soon.
    script = Script([SignInRequired("mailbox support: not signed in", code="not_signed_in",
                                    remedy="run `mailwatch login support`")] * 3)
    watcher, stop = watcher_for(script)
    watcher.run()
    assert stop.waits[:3] == [MAILBOX.poll_interval.total_seconds()] * 3


def test_a_connection_whose_token_is_about_to_die_is_replaced():
    # An OAuth2 login lasts as long as its token: the watcher reconnects instead of idling on.
    expiring = FakeConnection(good_syncs=5)
    expiring.credentials_expiring = lambda now: True
    script = Script([expiring, FakeConnection(good_syncs=1)])
    watcher, _stop = watcher_for(script)
    watcher.run()
    assert expiring.closed and expiring.good_syncs == 5  # never synced on, closed, replaced
    assert len(script.reports) == 1  # the fresh connection synced


def test_a_sent_watcher_keeps_the_sent_folder_in_idle_on_a_thread_of_its_own():
    # The Sent folder is watched like the inbox (IDLE, renewed), not polled by a job.
    connection = FakeConnection(idle=True, good_syncs=1)
    script = Script([connection])
    watcher = SentWatcher(fake_mailbox(sent_folder="Sent"), script.hooks(), rng=random.Random(4))
    watcher.stopping = RecordingStop()
    script.watcher = watcher
    with capture_logs() as logs:
        watcher.run()
    assert watcher.folder == "Sent" and watcher.thread.name == "watch-support-sent"
    (watching,) = [e for e in logs if e["event"] == "mailbox_watching"]
    assert (watching["folder"], watching["mode"]) == ("Sent", "idle") and connection.idle_waits == [60.0]


def test_watchers_add_a_sent_watcher_only_for_a_mailbox_with_a_sent_folder():
    # Sent watchers run on their own hooks (their trouble is not the mailbox's incident).
    def refused(mailbox):
        raise TransientError("refused")

    hooks = WatcherHooks(connect=refused, sync=None, synced=None, failed=lambda *_: None, clock=lambda: T0)
    settings = SimpleNamespace(mailboxes=[fake_mailbox("support", sent_folder="Sent"), fake_mailbox("sales")])
    watchers = Watchers()
    watchers.start(settings, hooks, sent_hooks=hooks)
    kinds = {key: type(watcher).__name__ for key, watcher in watchers.running.items()}
    assert kinds == {"support": "MailboxWatcher", "support:sent": "SentWatcher", "sales": "MailboxWatcher"}
    assert watchers.running["support:sent"].folder == "Sent"
    asyncio.run(watchers.stop(2.0))
    watchers.start(settings, hooks)  # no Sent hooks: inboxes only
    assert sorted(watchers.running) == ["sales", "support"]
    asyncio.run(watchers.stop(2.0))
    assert watchers.running == {}
