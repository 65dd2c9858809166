"""Durations as people write them ("90s", "15m", "1h30m", "2d") and read them back.

Pure: no configuration machinery, so any module may format a duration.
"""

import math
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

# Seconds per duration unit, largest first: a duration lists its parts in this order.
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# One part of a duration string: a number and its unit, e.g. "1.5h".
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([dhms])\s*", re.IGNORECASE)
# A duration string that is a bare number of seconds, e.g. "90" or "0.5".
_DURATION_SECONDS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")
# Appended to every duration error, so the fix is in the message.
_DURATION_HINT = "(use e.g. 90s, 15m, 20h, 2d)"


def parse_duration(text: str | int | float) -> timedelta:
    """Parse "90s", "15m", "20h", "2d", "1h30m", "0.5s" or plain seconds into a timedelta."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"not a duration: {text!r} {_DURATION_HINT}")
    if isinstance(text, int | float):
        return _seconds(text)
    if match := _DURATION_SECONDS.fullmatch(text):
        return _microseconds(Decimal(match[1]) * 1_000_000, text)
    return _microseconds(_duration_parts_us(text), text)


def _seconds(value: int | float) -> timedelta:
    if not math.isfinite(value):
        raise ValueError(f"not a duration: {value!r} {_DURATION_HINT}")
    try:
        return timedelta(seconds=value)
    except OverflowError:
        raise ValueError(f"duration too long: {value!r}") from None


def _duration_parts_us(text: str) -> Decimal:
    # Units must appear once each, largest first, so "1m30m" is a typo, not 31m.
    units = list(_UNIT_SECONDS)
    total, position, last = Decimal(0), 0, -1
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        unit = match[2].lower() if match else ""
        if not match or units.index(unit) <= last:
            raise ValueError(f"not a duration: {text!r} {_DURATION_HINT}")
        total += Decimal(match[1]) * _UNIT_SECONDS[unit] * 1_000_000
        position, last = match.end(), units.index(unit)
    if last < 0:
        raise ValueError(f"not a duration: {text!r} {_DURATION_HINT}")
    return total


def _microseconds(total_us: Decimal, text: str) -> timedelta:
    try:
        return timedelta(microseconds=int(total_us.to_integral_value()))
    except (OverflowError, InvalidOperation):
        raise ValueError(f"duration too long: {text!r}") from None


def format_duration(duration: timedelta) -> str:
    """Write a timedelta for people ("20h", "1h 30m", "0.5s"); parse_duration reads it back."""
    if duration < timedelta(0):
        return "-" + format_duration(-duration)
    seconds, micros = divmod(duration // timedelta(microseconds=1), 1_000_000)
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        count, seconds = divmod(seconds, size)
        if unit == "s" and micros:
            parts.append(f"{count}.{micros:06d}".rstrip("0") + "s")
        elif count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0s"


def to_the_second(duration: timedelta) -> str:
    """A measured duration for logs and reasons, like the configuration writes it: '3d 31s', '20h'."""
    return format_duration(timedelta(seconds=round(duration.total_seconds())))


def rounded(duration: timedelta) -> str:
    """A duration to the minute for people: '23h 59m', 'under a minute'."""
    minutes = int(abs(duration).total_seconds() // 60)
    return format_duration(timedelta(minutes=minutes)) if minutes else "under a minute"


def within(duration: timedelta) -> str:
    """'within 2h 5m', 'within a minute': `rounded` after "within" without saying "within under"."""
    minutes = int(abs(duration).total_seconds() // 60)
    return f"within {format_duration(timedelta(minutes=minutes))}" if minutes else "within a minute"
