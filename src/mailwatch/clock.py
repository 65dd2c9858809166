"""The one way mailwatch learns the time.

Everything below the composition root (`cli`, the daemon's `run`) takes a `Clock` or a
`now` argument; only the root passes `system_clock`. Tests pass a clock they control.
"""

from collections.abc import Callable
from datetime import UTC, datetime

# A source of aware UTC times.
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)
