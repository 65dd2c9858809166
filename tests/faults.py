"""Faults injected into real parts: commits that fail like a full disk, a tiny filesystem."""

import re
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

DISK_FULL = "database or disk is full"  # SQLite's own words for SQLITE_FULL


class FailingCommits:
    """Makes the next `times` commits of transactions that ran a matching statement fail.

    The statement is matched by a regular expression on its SQL; the failure is the
    OperationalError SQLite raises on a full disk, so the code under test sees a real one.
    """

    def __init__(self, engine: Engine, statement: str, times: int = 1) -> None:
        self.engine = engine
        self.pattern = re.compile(statement, re.IGNORECASE | re.DOTALL)
        self.times = times
        self.failed = 0
        event.listen(engine, "after_cursor_execute", self._seen)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._forget)

    def _seen(self, connection, cursor, statement, parameters, context, executemany) -> None:
        if self.pattern.search(statement):
            connection.info["fault_matched"] = True

    def _commit(self, connection) -> None:
        if connection.info.pop("fault_matched", False) and self.times > 0:
            self.times -= 1
            self.failed += 1
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError(DISK_FULL))

    def _forget(self, connection) -> None:
        connection.info.pop("fault_matched", None)

    def remove(self) -> None:
        event.remove(self.engine, "after_cursor_execute", self._seen)
        event.remove(self.engine, "commit", self._commit)
        event.remove(self.engine, "rollback", self._forget)


@contextmanager
def small_volume(path: Path, size: str = "3m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (root only): a disk that really fills up."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(volume: Path, leave_bytes: int = 0) -> Path:
    """Fill `volume` up, leaving about `leave_bytes` free; returns the filler file to delete."""
    filler = volume / "filler"
    with filler.open("wb", buffering=0) as out:
        chunk = b"\0" * 65536
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
    if leave_bytes:
        with filler.open("r+b") as out:
            out.truncate(max(0, filler.stat().st_size - leave_bytes))
    return filler


def with_database(config: Path, url: str) -> Path:
    """Point a written mailwatch.toml at another database URL."""
    text = config.read_text()
    start = text.index('database = "') + len('database = "')
    config.write_text(text[:start] + url + text[text.index('"', start):])
    return config
