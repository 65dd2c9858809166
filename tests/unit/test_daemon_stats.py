"""The daemon's running totals, bumped from one thread per mailbox."""

import threading

from mailwatch.daemon.stats import Stats


def test_counts_start_at_zero_and_add_up():
    # A counter nobody touched reads 0; adds of any size accumulate per name.
    stats = Stats()
    stats.add("logged", 3)
    stats.add("logged")
    stats.add("sent", 2)
    assert (stats["logged"], stats["sent"], stats["escalated"]) == (4, 2, 0)


def test_an_add_from_another_thread_waits_while_the_counts_are_held():
    # `counts[name] += n` is a read and a write; an add must never run between another's two.
    # (CPython 3.11 happens not to switch threads there, so a stress test cannot show the race.)
    stats = Stats()
    with stats._lock:
        adder = threading.Thread(target=stats.add, args=("logged", 2))
        adder.start()
        adder.join(0.05)
        assert adder.is_alive()
    adder.join(5)
    assert stats["logged"] == 2
