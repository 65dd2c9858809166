"""Fixtures shared by the whole suite: real Dovecot, real databases, config files."""

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mailwatch.testing.devservers import DOVECOT_BINARY, Dovecot

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
POSTGRES_URL = os.environ.get("MAILWATCH_TEST_POSTGRES_URL")


@pytest.fixture(scope="session", autouse=True)
def allow_root() -> Iterator[None]:
    """The test machines run everything as root; mailwatch itself refuses that unless told."""
    previous = os.environ.get("MAILWATCH_ALLOW_ROOT")
    os.environ["MAILWATCH_ALLOW_ROOT"] = "1"
    yield
    if previous is None:
        os.environ.pop("MAILWATCH_ALLOW_ROOT", None)
    else:
        os.environ["MAILWATCH_ALLOW_ROOT"] = previous


@pytest.fixture(autouse=True)
def logging_as_found() -> Iterator[None]:
    """Undo the root handler an in-process `main()` installs, so later tests' threads stay quiet."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One real Dovecot for the session; tests keep apart by using fresh accounts."""
    if not Path(DOVECOT_BINARY).exists():
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot.create()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def imap_user() -> str:
    """A fresh, empty IMAP account on the test Dovecot."""
    return f"t-{uuid.uuid4().hex[:12]}"


def _postgres_database() -> Iterator[str]:
    admin = create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    name = f"mailwatch_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database: SQLite always, PostgreSQL when the suite is given one."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailwatch.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("MAILWATCH_TEST_POSTGRES_URL is not set")
    yield from _postgres_database()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mailwatch.db'}"


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not at {CORPUS}")
    return CORPUS


@pytest.fixture
def write_config(tmp_path) -> Callable[..., Path]:
    """A factory that writes a mailwatch.toml for the test Dovecot and returns its path."""

    def write(body: str) -> Path:
        (tmp_path / "imap-password").write_text("secret\n")
        path = tmp_path / "mailwatch.toml"
        path.write_text(body)
        return path

    return write


def pytest_report_header() -> list[str]:
    return [
        f"dovecot: {shutil.which('dovecot') or 'missing'}",
        f"postgres: {'yes' if POSTGRES_URL else 'not configured'}",
        f"corpus: {CORPUS if CORPUS.is_dir() else 'missing'}",
    ]
