"""Local hardening: the lock file, the database file's mode, and refusing root."""

import os
import stat

import pytest

from mailwatch.cli import main, refused_as_root
from mailwatch.db.engine import Database
from mailwatch.db.lock import lock_sqlite
from mailwatch.errors import ConfigError


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_symlink_at_the_lock_path_is_refused_and_its_target_untouched(tmp_path):
    # A planted mw.db.lock → victim symlink used to truncate the victim.
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "mw.db.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        lock_sqlite(f"sqlite:///{tmp_path}/mw.db")
    assert victim.read_text() == "precious\n"


def test_lock_file_is_created_0600_and_never_truncated(tmp_path):
    # Only mailwatch's user may open it; reopening keeps what is there.
    handle = lock_sqlite(f"sqlite:///{tmp_path}/mw.db")
    handle.close()
    lock = tmp_path / "mw.db.lock"
    assert mode(lock) == 0o600
    lock.write_text("x")
    lock_sqlite(f"sqlite:///{tmp_path}/mw.db").close()
    assert lock.read_text() == "x"


def test_new_sqlite_database_and_its_wal_are_private(tmp_path):
    # The message log holds every customer's address and words: 0600, whatever the umask.
    old = os.umask(0o022)
    try:
        db = Database(f"sqlite:///{tmp_path}/data/mw.db")
        db.ensure_schema()
        with db.engine.connect():
            pass
        assert mode(tmp_path / "data" / "mw.db") == 0o600
        wal = tmp_path / "data" / "mw.db-wal"
        assert not wal.exists() or mode(wal) == 0o600
        db.dispose()
    finally:
        os.umask(old)


def test_root_is_refused_unless_told():
    # As root only --allow-root or MAILWATCH_ALLOW_ROOT=1 lets mailwatch start.
    assert refused_as_root(False, 0, {})
    assert not refused_as_root(True, 0, {})
    assert not refused_as_root(False, 0, {"MAILWATCH_ALLOW_ROOT": "1"})
    assert refused_as_root(False, 0, {"MAILWATCH_ALLOW_ROOT": "yes please"})
    assert not refused_as_root(False, 1000, {})


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can see the refusal")
def test_cli_refuses_root_with_exit_2_and_says_how(config_file, monkeypatch, capsys):
    # The real command line, run as root: refused before reading anything; --allow-root goes ahead.
    monkeypatch.delenv("MAILWATCH_ALLOW_ROOT")
    path = config_file()
    assert main(["--config", str(path), "check", "--offline"]) == 2
    assert "refusing to run as root" in capsys.readouterr().err
    assert main(["--allow-root", "--config", str(path), "check", "--offline"]) == 0
