"""The migrations and the models describe the same schema, on SQLite and PostgreSQL."""

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mailwatch.db.engine import SCHEMA_HEAD, Database
from mailwatch.db.models import Base
from mailwatch.errors import SchemaError


def test_migrated_schema_matches_the_models(database_url):
    # A model change without a migration (or the reverse) fails here, not in production.
    db = Database(database_url)
    db.ensure_schema()
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    db.dispose()


def test_sqlite_runs_in_wal_mode(sqlite_url):
    # WAL lets `mailwatch threads` read while the daemon writes.
    db = Database(sqlite_url)
    db.ensure_schema()
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()


def test_tickets_start_at_1001_on_every_backend(database_url):
    # Ticket numbers look like tickets, not like a fresh table's first row.
    db = Database(database_url)
    db.ensure_schema()
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO threads (mailbox, subject, customer_address, customer_name, status, first_received_at,"
            " last_customer_at, clock, escalation_level, message_count, created_at) VALUES"
            " ('m', 's', 'c@example.com', '', 'open', '2026-01-01', '2026-01-01', 1, 0, 0, '2026-01-01')"
        )
        assert connection.exec_driver_sql("SELECT id FROM threads").scalar() == 1001
    db.dispose()


def test_schema_head_is_the_newest_migration(database_url):
    # Starts trust SCHEMA_HEAD instead of loading alembic: a new migration must move it too.
    db = Database(database_url)
    assert db.head_revision() == SCHEMA_HEAD
    db.dispose()


def test_an_empty_database_gets_the_schema_despite_the_fast_path(database_url):
    db = Database(database_url)
    assert db.schema_revision() is None
    db.ensure_schema()
    assert db.schema_revision() == SCHEMA_HEAD
    db.dispose()


def _with_version_rows(database_url: str, statement: str) -> Database:
    """A database at this schema whose alembic_version was then changed by `statement`."""
    db = Database(database_url)
    db.ensure_schema()
    with db.engine.begin() as connection:
        connection.exec_driver_sql(statement)
    return db


def test_a_database_at_an_older_schema_is_refused(database_url):
    # What a stale fast path would let through: the daemon running on last version's tables.
    db = _with_version_rows(database_url, "UPDATE alembic_version SET version_num = '0009'")
    assert db.schema_revision() == "0009"
    with pytest.raises(SchemaError, match="older than this mailwatch"):
        db.ensure_schema()
    db.dispose()


def test_a_database_recording_two_revisions_is_refused(database_url):
    # alembic's branches can leave two rows; our migrations never do, so it is not our database.
    db = _with_version_rows(database_url, "INSERT INTO alembic_version (version_num) VALUES ('0009')")
    with pytest.raises(SchemaError, match="several schema revisions"):
        db.ensure_schema()
    db.dispose()


def test_a_start_on_a_current_database_does_not_load_alembic(sqlite_url):
    # The point of SCHEMA_HEAD: a module-level alembic import anywhere on this path costs every poll 0.1 s.
    Database(sqlite_url).ensure_schema()
    probe = ("import sys; from mailwatch.db.engine import Database; "
             f"Database({sqlite_url!r}).ensure_schema(); print(sorted(m for m in sys.modules if m.startswith('alembic')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
