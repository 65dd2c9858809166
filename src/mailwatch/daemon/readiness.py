"""When `mailwatch run` may tell systemd it is ready: once every mailbox has synced once.

A mailbox that is down at start must not hold READY back for ever (systemd would time
the start out and restart the healthy mailboxes with it): once a mailbox that has not
synced is failing and its own `imap.timeout` has passed since start, READY goes out
without it, and the STATUS line names it as failing. A mailbox that is merely slow (a
large first sync) is waited for. Times are monotonic seconds passed in, so tests need
no clock.
"""

import threading
from collections.abc import Iterable, Mapping


class Readiness:
    """Which mailboxes have completed their first sync, and whether READY may go out."""

    def __init__(self, wait_s: Mapping[str, float], started_s: float) -> None:
        self._wait_s = dict(wait_s)  # per mailbox: how long a failing one may hold READY back
        self._started_s = started_s
        self._synced: set[str] = set()
        self._lock = threading.Lock()  # watchers report from their own threads

    def synced(self, mailbox: str) -> None:
        """A mailbox finished a sync."""
        with self._lock:
            self._synced.add(mailbox)

    def waiting_for(self) -> list[str]:
        """The mailboxes that have not synced yet."""
        with self._lock:
            return [name for name in self._wait_s if name not in self._synced]

    def is_ready(self, now_s: float, failing: Iterable[str]) -> bool:
        """True when every mailbox synced, or each one that has not is failing and had its wait."""
        down, elapsed_s = set(failing), now_s - self._started_s
        return all(name in down and elapsed_s >= self._wait_s[name] for name in self.waiting_for())
