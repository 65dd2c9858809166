"""Durations for people: logs to the second, reports after "within"."""

from datetime import timedelta

from mailwatch.durations import to_the_second, within


def test_within_never_says_within_under():
    # "90% within under a minute" is not English; "within a minute" is.
    assert within(timedelta(seconds=20)) == "within a minute"
    assert within(timedelta(hours=2, minutes=5, seconds=40)) == "within 2h 5m"


def test_to_the_second_drops_microseconds_and_reads_back_as_config():
    # Log events say "3d 31s", the way a configuration writes durations.
    assert to_the_second(timedelta(days=3, seconds=31.133037)) == "3d 31s"
    assert to_the_second(timedelta(hours=20)) == "20h"
