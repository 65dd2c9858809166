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


def iso_utc(value: datetime | None) -> str | None:
    """A time for JSON output: ISO 8601 in UTC with 'Z', the one format every command writes."""
    if value is None:
        return None
    # SQLite hands back stored UTC times without tzinfo; they are UTC all the same.
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
