"""Fixtures for tests that cross a socket: settings pointing at the test Dovecot."""

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from mailwatch.config import Settings, load_settings
from mailwatch.db.engine import Database
from mailwatch.devservers import Dovecot, SmtpSink

CONFIG_TEMPLATE = """\
[service]
name = "Acme Support"
phone = "+1 800 555 0100"
timezone = "Europe/Berlin"
database = "{database}"
staff = ["@acme.example"]

[[mailbox]]
name = "support"
address = "support@acme.example"
folder = "{folder}"
{mailbox_extra}
  [mailbox.imap]
  host = "127.0.0.1"
  port = {port}
  security = "none"
  username = "{user}"
  password_file = "{password_file}"

[acknowledgment]
enabled = {ack}
{ack_extra}
{smtp_section}
"""

SMTP_SECTION = """
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "Acme Support <support@acme.example>"
retry_initial = "0.2s"
retry_max = "1s"
"""


@pytest.fixture
def config_file(dovecot: Dovecot, imap_user: str, database_url: str, tmp_path: Path) -> Callable[..., Path]:
    """A factory writing a mailwatch.toml for this test's Dovecot account and database."""

    def write(extra: str = "", folder: str = "INBOX", ack: bool = False, mailbox_extra: str = "",
              smtp: SmtpSink | None = None, ack_extra: str = "", imap_port: int | None = None) -> Path:
        password_file = tmp_path / "imap-password"
        password_file.write_text(dovecot.password + "\n")
        body = CONFIG_TEMPLATE.format(
            database=database_url, folder=folder, port=imap_port or dovecot.port, user=imap_user,
            password_file=password_file, ack=str(ack).lower(), mailbox_extra=mailbox_extra,
            ack_extra=textwrap.dedent(ack_extra), smtp_section=SMTP_SECTION.format(port=smtp.port) if smtp else "",
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
