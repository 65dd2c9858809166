"""The single-instance lock for SQLite: one process per database file.

SQLite serves one writer; two mailwatch processes on one file would both claim the
same outbox rows, so the second is refused at start. PostgreSQL needs no lock: its
row locks (`FOR UPDATE SKIP LOCKED`) keep several instances apart.
"""

import fcntl
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from mailwatch.errors import InstanceLocked


def lock_sqlite(url: str) -> IO | None:
    """An exclusive lock beside a SQLite database, held while the returned file is open."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InstanceLocked(
            f"another mailwatch process (`run` or `poll`) is already using {parsed.database}; "
            "one SQLite database serves one process at a time (use PostgreSQL to run several)"
        ) from None
    return handle
