"""One mailbox's watched folder, kept current from a thread of its own.

The watcher logs in, syncs, then waits in IMAP IDLE (when the server offers it and
`mailbox.idle` is on) until the folder changes or `poll_interval` passes, and syncs
again; without IDLE it simply polls. IDLE is renewed (DONE, then IDLE again after a
sync) every `poll_interval`. A server that cannot be reached or dropped us is retried
with a backoff capped at a few seconds (jittered), so a server that comes back after
an outage of any length is in use again within seconds; a crash in our own code backs
off to minutes, and a refused login is retried slowly, not hammered. A `SentWatcher` does the
same for a mailbox's Sent folder on a connection of its own, so a staff reply filed
there is seen within seconds. `Watchers` starts one watcher per mailbox (and one per
Sent folder) and stops them all within one shared time budget.
"""

import asyncio
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from mailwatch.clock import Clock
from mailwatch.config import MailboxSettings, Settings
from mailwatch.errors import AuthenticationError, SignInRequired, TransientError
from mailwatch.imap import ImapConnection
from mailwatch.pipeline.sync import FolderReport
from mailwatch.retry import backoff_s

log = structlog.get_logger(__name__)

RETRY_INITIAL_S = 1.0
# A connection attempt to a server that is down costs it one refused SYN (or one greeting
# and a BYE): one every 2-4 s per connection does not hammer it, and a server that is back
# is in use again within 4 s, however long it was down (the target is under 5 s).
RECONNECT_MAX_S = 4.0
RETRY_MAX_S = 120.0  # anything else (a bug of ours that will not heal on its own) backs off to minutes
IDLE_LIMIT_S = 29 * 60.0  # RFC 2177: servers may drop a client idle longer than 30 minutes
AUTH_RETRY_S = 300.0  # a wrong password does not fix itself; SIGHUP retries at once


@dataclass
class WatcherHooks:
    """How a watcher talks back to the daemon (each is called from the watcher's thread)."""

    connect: Callable[[MailboxSettings], ImapConnection]
    sync: Callable[[ImapConnection, MailboxSettings, threading.Event], FolderReport]
    synced: Callable[[MailboxSettings, FolderReport], None]
    failed: Callable[[MailboxSettings, Exception, int], None]
    clock: Clock  # the daemon's: when a connection's sign-in is about to expire


def idle_renewal_s(mailbox: MailboxSettings) -> float:
    """How long one IDLE command lasts before it is ended and, after a sync, re-issued.

    The poll interval, and never past the 29 minutes after which RFC 2177 lets a server
    drop an idle client; each renewal's sync doubles as the check that a quiet
    connection still works.
    """
    return min(mailbox.poll_interval.total_seconds(), IDLE_LIMIT_S)


class MailboxWatcher:
    """IDLE-or-poll loop for one mailbox; `stop()` ends it within about a second."""

    def __init__(self, mailbox: MailboxSettings, hooks: WatcherHooks, rng: random.Random | None = None) -> None:
        self.mailbox = mailbox
        self.hooks = hooks
        self.rng = rng or random.Random()
        self.stopping = threading.Event()
        self.attempt = 0  # failures since the last good sync
        self.thread = threading.Thread(target=self.run, name=f"watch-{mailbox.name}", daemon=True)

    @property
    def folder(self) -> str:
        """The folder this watcher keeps current (the sync hook selects it, so IDLE waits on it)."""
        return self.mailbox.folder

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def join(self, timeout_s: float) -> bool:
        self.thread.join(timeout_s)
        return not self.thread.is_alive()

    def run(self) -> None:
        """Reconnect forever until stopped."""
        while not self.stopping.is_set():
            try:
                connection = self.hooks.connect(self.mailbox)
            except Exception as exc:  # noqa: BLE001 - retried below, whatever it was
                self._wait_after(exc)
                continue
            try:
                self._watch(connection)
            except Exception as exc:  # noqa: BLE001 - a dropped connection is retried
                self._wait_after(exc)
            finally:
                connection.close()

    def _watch(self, connection: ImapConnection) -> None:
        use_idle = self.mailbox.idle and connection.supports_idle()
        log.info("mailbox_watching", mailbox=self.mailbox.name, folder=self.folder, mode="idle" if use_idle else "poll")
        # An OAuth2 login lasts as long as its token: reconnect with a fresh one before it dies.
        while not self.stopping.is_set() and not connection.credentials_expiring(self.hooks.clock()):
            report = self.hooks.sync(connection, self.mailbox, self.stopping)
            self.attempt = 0  # only a good sync proves the trouble is over
            self.hooks.synced(self.mailbox, report)
            if connection.announced_new_mail():
                continue  # mail arrived during the sync: IDLE would not say so again
            if use_idle:
                connection.idle_wait(idle_renewal_s(self.mailbox), self.stopping)
            else:
                self.stopping.wait(self.mailbox.poll_interval.total_seconds())

    def _wait_after(self, exc: Exception) -> None:
        self.attempt += 1
        attempt = self.attempt
        self.hooks.failed(self.mailbox, exc, attempt)
        delay = retry_delay_s(exc, attempt, self.mailbox, self.rng)
        if not isinstance(exc, TransientError):
            log.exception("mailbox_watch_crashed", mailbox=self.mailbox.name, exc_info=exc)
        log.warning("mailbox_retry", mailbox=self.mailbox.name, attempt=attempt, retry_in_s=round(delay, 1),
                    error=str(exc))
        self.stopping.wait(delay)


def retry_delay_s(exc: Exception, attempt: int, mailbox: MailboxSettings, rng: random.Random) -> float:
    """How long a watcher waits after its `attempt`-th failure in a row, by what failed."""
    if isinstance(exc, SignInRequired):
        # The refusal is remembered, so this asks the database, not the provider; a new
        # `mailwatch login` is picked up within one poll interval, without a restart.
        return mailbox.poll_interval.total_seconds()
    if isinstance(exc, AuthenticationError):
        return AUTH_RETRY_S
    if isinstance(exc, TransientError):
        return backoff_s(attempt, RETRY_INITIAL_S, RECONNECT_MAX_S, rng)
    return backoff_s(attempt, RETRY_INITIAL_S, RETRY_MAX_S, rng)


class SentWatcher(MailboxWatcher):
    """The mailbox's Sent folder on a connection of its own, in IDLE like the inbox.

    A staff reply filed in Sent stops the clock within seconds, not at the next
    poll_interval; the inbox connection stays in IDLE on the inbox meanwhile.
    """

    def __init__(self, mailbox: MailboxSettings, hooks: WatcherHooks, rng: random.Random | None = None) -> None:
        super().__init__(mailbox, hooks, rng)
        self.thread.name = f"watch-{mailbox.name}-sent"

    @property
    def folder(self) -> str:
        return self.mailbox.sent_folder or ""


class Watchers:
    """One watcher per configured mailbox (and one per Sent folder), started and stopped together."""

    def __init__(self) -> None:
        self.running: dict[str, MailboxWatcher] = {}

    def start(self, settings: Settings, hooks: WatcherHooks, sent_hooks: WatcherHooks | None = None) -> None:
        """An inbox watcher per mailbox on `hooks`; with `sent_hooks`, a SentWatcher per sent_folder.

        The Sent watchers have hooks of their own: a Sent folder's trouble is logged, but it
        is not the mailbox's incident, and the inbox watcher owns last_sync.
        """
        for mailbox in settings.mailboxes:
            self._start(mailbox.name, MailboxWatcher(mailbox, hooks))
            if sent_hooks is not None and mailbox.sent_folder:
                self._start(f"{mailbox.name}:sent", SentWatcher(mailbox, sent_hooks))

    def _start(self, key: str, watcher: MailboxWatcher) -> None:
        self.running[key] = watcher
        watcher.start()

    def signal_stop(self) -> None:
        """No new batches from here on; each watcher ends after its current command."""
        for watcher in self.running.values():
            watcher.stop()

    async def stop(self, budget_s: float) -> None:
        """Stop every watcher at once, then wait for all of them within one shared budget."""
        watchers, self.running = list(self.running.values()), {}
        for watcher in watchers:
            watcher.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        for watcher in watchers:
            if not await asyncio.to_thread(watcher.join, max(0.0, deadline - loop.time())):
                log.warning("watcher_still_busy", mailbox=watcher.mailbox.name, folder=watcher.folder,
                            hint="it stops after its current command; its batch is committed or redone")
