"""Fixtures for tests that cross a socket: settings pointing at the test Dovecot."""

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwatch.config import Settings, load_settings
from mailwatch.db.engine import Database
from mailwatch.testing.devservers import Dovecot, SmtpSink, local_config


@pytest.fixture
def config_file(dovecot: Dovecot, imap_user: str, database_url: str, tmp_path: Path) -> Callable[..., Path]:
    """A factory writing a mailwatch.toml for this test's Dovecot account and database."""

    def write(extra: str = "", folder: str = "INBOX", ack: bool = False, mailbox_extra: str = "",
              smtp: SmtpSink | None = None, ack_extra: str = "", imap_port: int | None = None,
              service_extra: str = "") -> Path:
        password_file = tmp_path / "imap-password"
        password_file.write_text(dovecot.password + "\n")
        body = local_config(
            database=database_url, imap_port=imap_port or dovecot.port, imap_user=imap_user,
            password_file=password_file, smtp_port=smtp.port if smtp else None, folder=folder, ack=ack,
            mailbox_lines=mailbox_extra, ack_lines=textwrap.dedent(ack_extra),
            service_lines=textwrap.dedent(service_extra),
        )
        path = tmp_path / "mailwatch.toml"
        path.write_text(body + textwrap.dedent(extra))
        return path

    return write


@pytest.fixture
def settings(config_file) -> Settings:
    return load_settings(config_file())


@pytest.fixture
def db_for() -> Callable[[Settings], Database]:
    """A factory for a migrated Database of some settings; disposed after the test."""
    made: list[Database] = []

    def make(settings: Settings) -> Database:
        database = Database(settings.service.database)
        database.ensure_schema()
        made.append(database)
        return database

    yield make
    for database in made:
        database.dispose()


@pytest.fixture
def db(settings: Settings, db_for) -> Database:
    return db_for(settings)


@pytest.fixture
def smtp_sink() -> SmtpSink:
    """A real aiosmtpd server on loopback that records what mailwatch sends."""
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()
