"""Fixtures for the unit tests that need a database: a real, migrated SQLite file."""

from collections.abc import Iterator

import pytest

from mailwatch.db.engine import Database


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Database]:
    """A fresh SQLite database with the current schema; disposed after the test."""
    database = Database(sqlite_url)
    database.ensure_schema()
    yield database
    database.dispose()
