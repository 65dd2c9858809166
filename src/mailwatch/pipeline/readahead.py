"""Fetching a backlog's next batch while this one is recorded.

A FETCH of 250 messages keeps the sync waiting for the IMAP server (bench `ingest`:
about a tenth of its wall time); recording a batch keeps the server waiting for us.
`ReadAhead` overlaps the two: while the caller records batch k, one worker thread asks
for batch k+1 on the same connection. The connection never carries two commands at
once: the worker runs only between one `next()` and the caller's `pause()`, and the
caller uses the connection for anything else only after `pause()`.
"""

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()  # what next() returns for an exhausted iterator, in the worker


class ReadAhead(Generic[T]):
    """Iterates `items` one item ahead, in a worker thread; a context manager that ends it.

    `ahead=False` iterates them in the caller's thread: a sync of one batch, the daemon's
    usual one, needs no worker to find out that no second batch comes.
    """

    def __init__(self, items: Iterator[T], ahead: bool = True) -> None:
        self._items = items
        self._wanted = ahead
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: "Future[object] | None" = None

    def __iter__(self) -> "ReadAhead[T]":
        return self

    def __next__(self) -> T:
        # The first item is fetched here, in the caller's thread.
        item = self._ahead.result() if self._ahead is not None else next(self._items, _END)
        self._ahead = None
        if item is _END:
            raise StopIteration
        if not self._wanted:
            return item  # type: ignore[return-value]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="mailwatch-readahead")
        self._ahead = self._pool.submit(next, self._items, _END)
        return item  # type: ignore[return-value]

    def pause(self) -> None:
        """Wait until the item in flight has arrived (its error, if any, comes with next())."""
        if self._ahead is not None:
            wait([self._ahead])

    def __enter__(self) -> "ReadAhead[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.pause()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
