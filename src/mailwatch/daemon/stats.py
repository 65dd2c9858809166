"""The daemon's running totals: messages logged, emails sent, steps escalated.

Mailbox watchers add to them from their own threads while the event loop adds and
reads, and `counts[key] += n` is a read and a write that two threads can interleave;
so every update and read goes through one lock.
"""

import threading
from collections import Counter


class Stats:
    """Counters that any thread may add to; read for the STATUS line and the last log line."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]
