"""The single-instance lock for SQLite: one process per database file.

SQLite serves one writer; two mailwatch processes on one file would both claim the
same outbox rows, so the second is refused at start. PostgreSQL needs no lock: its
row locks (`FOR UPDATE SKIP LOCKED`) keep several instances apart.
"""

import errno
import fcntl
import os
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from mailwatch.errors import ConfigError, InstanceLocked

LOCK_MODE = 0o600  # only mailwatch's own user needs to open it


def lock_sqlite(url: str) -> IO | None:
    """An exclusive lock beside a SQLite database, held while the returned file is open."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open_lock_file(path)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InstanceLocked(
            f"another mailwatch process (`run` or `poll`) is already using {parsed.database}; "
            "one SQLite database serves one process at a time (use PostgreSQL to run several)"
        ) from None
    return handle


def open_lock_file(path: Path) -> IO:
    """Open (or create, 0600) the lock file without following a symlink and without truncating.

    The lock's content never matters; opening it for writing with truncation let a
    symlink planted at `mw.db.lock` truncate whatever it pointed to.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags, LOCK_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError([f"{path}: is a symbolic link; refusing to open the lock file through it"]) from None
        raise
    return os.fdopen(descriptor, "w")
