"""ReadAhead: one item ahead in a worker thread, and never while the caller holds the connection."""

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailwatch.pipeline.readahead import ReadAhead


class Fetches:
    """An iterator that notes which thread made each item and whether one is being made."""

    def __init__(self, count: int, slow_s: float = 0.0, fail_at: int | None = None) -> None:
        self.count, self.slow_s, self.fail_at = count, slow_s, fail_at
        self.busy = False
        self.threads: list[int] = []

    def __iter__(self):
        for n in range(self.count):
            self.busy = True
            self.threads.append(threading.get_ident())
            time.sleep(self.slow_s)
            self.busy = False
            if n == self.fail_at:
                raise ConnectionError(f"fetch {n} failed")
            yield n


@given(st.integers(min_value=0, max_value=20))
def test_every_item_comes_once_and_in_order(count: int) -> None:
    with ReadAhead(iter(Fetches(count))) as items:
        assert list(items) == list(range(count))


def test_the_first_item_is_made_by_the_caller_and_the_next_by_the_worker() -> None:
    fetches = Fetches(3)
    with ReadAhead(iter(fetches)) as items:
        list(items)
    assert fetches.threads[0] == threading.get_ident()
    assert all(thread != threading.get_ident() for thread in fetches.threads[1:])


def test_the_next_item_is_made_while_the_caller_works_on_this_one() -> None:
    fetches = Fetches(2)
    with ReadAhead(iter(fetches)) as items:
        next(items)
        # Without asking for it, the second fetch happens while the caller records the first.
        deadline = time.monotonic() + 10
        while len(fetches.threads) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(fetches.threads) == 2


def test_after_pause_nothing_is_in_flight() -> None:
    fetches = Fetches(5, slow_s=0.02)
    with ReadAhead(iter(fetches)) as items:
        for _ in items:
            items.pause()
            assert not fetches.busy  # the connection is free for a NOOP and a SEARCH


def test_a_failed_fetch_surfaces_at_the_next_item_not_at_pause() -> None:
    with ReadAhead(iter(Fetches(3, fail_at=1))) as items:
        assert next(items) == 0
        items.pause()
        with pytest.raises(ConnectionError, match="fetch 1 failed"):
            next(items)


def test_leaving_early_waits_for_the_item_in_flight() -> None:
    fetches = Fetches(3, slow_s=0.1)
    with ReadAhead(iter(fetches)) as items:
        next(items)
    assert not fetches.busy and len(fetches.threads) == 2


def test_without_read_ahead_every_item_is_made_by_the_caller():
    # A one-batch sync: no worker thread is started to find that nothing follows.
    fetches = Fetches(3)
    with ReadAhead(iter(fetches), ahead=False) as items:
        assert list(items) == [0, 1, 2]
    assert fetches.threads == [threading.get_ident()] * 3
