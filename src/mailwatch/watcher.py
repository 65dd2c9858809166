"""One mailbox's watched folder, kept current from a thread of its own.

The watcher logs in, syncs, then waits in IMAP IDLE (when the server offers it and
`mailbox.idle` is on) until the folder changes or `poll_interval` passes, and syncs
again; without IDLE it simply polls. Every failure is retried with capped
exponential backoff and jitter; a refused login is retried slowly, not hammered.
"""

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from mailwatch.config import MailboxSettings
from mailwatch.errors import AuthenticationError, TransientError
from mailwatch.imap import ImapConnection
from mailwatch.pipeline.sync import FolderReport
from mailwatch.retry import backoff_s

log = structlog.get_logger(__name__)

RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 120.0
AUTH_RETRY_S = 300.0  # a wrong password does not fix itself; SIGHUP retries at once


@dataclass
class WatcherHooks:
    """How a watcher talks back to the daemon (each is called from the watcher's thread)."""

    connect: Callable[[MailboxSettings], ImapConnection]
    sync: Callable[[ImapConnection, MailboxSettings, threading.Event], FolderReport]
    synced: Callable[[MailboxSettings, FolderReport], None]
    failed: Callable[[MailboxSettings, Exception, int], None]


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
        interval_s = self.mailbox.poll_interval.total_seconds()
        while not self.stopping.is_set():
            report = self.hooks.sync(connection, self.mailbox, self.stopping)
            self.attempt = 0  # only a good sync proves the trouble is over
            self.hooks.synced(self.mailbox, report)
            if use_idle:
                # Re-issued every poll_interval: well inside IDLE's 29 minutes, and a health check.
                connection.idle_wait(interval_s, self.stopping)
            else:
                self.stopping.wait(interval_s)

    def _wait_after(self, exc: Exception) -> None:
        self.attempt += 1
        attempt = self.attempt
        self.hooks.failed(self.mailbox, exc, attempt)
        if isinstance(exc, AuthenticationError):
            delay = AUTH_RETRY_S
        else:
            delay = backoff_s(attempt, RETRY_INITIAL_S, RETRY_MAX_S, self.rng)
        if not isinstance(exc, TransientError):
            log.exception("mailbox_watch_crashed", mailbox=self.mailbox.name, exc_info=exc)
        log.warning("mailbox_retry", mailbox=self.mailbox.name, attempt=attempt, retry_in_s=round(delay, 1),
                    error=str(exc))
        self.stopping.wait(delay)


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
