"""A new message in a thread of N messages costs index descents, never a read of the thread (issue 11)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text

from bench.threadcost import build_thread, reply
from mailwatch.clock import system_clock
from mailwatch.config import load_settings
from mailwatch.db.engine import Database
from mailwatch.testing.devservers import local_config
from mailwatch.pipeline.ingest import record_message
from mailwatch.service import Service

THREAD_SIZE = 2_000  # enough rows that SQLite's planner has a real choice to make


@pytest.fixture
def big_thread(tmp_path):
    (tmp_path / "pw").write_text("x\n")
    config = tmp_path / "mailwatch.toml"
    config.write_text(local_config(database=f"sqlite:///{tmp_path / 'm.db'}", imap_port=1, imap_user="u",
                                   password_file=tmp_path / "pw"))
    settings = load_settings(config)
    db = Database(settings.service.database)
    db.ensure_schema()
    thread_id = build_thread(db, THREAD_SIZE, datetime.now(UTC) - timedelta(days=3))
    service = Service(settings, db, system_clock)
    yield db, thread_id, replace(service.folder_context(settings.mailboxes[0], "INBOX"), uidvalidity=1)
    db.dispose()


def query_plans(db: Database, statements: list[tuple[str, object]]) -> list[str]:
    with db.engine.connect() as connection:
        return [
            " ".join(str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in statements
        ]


def test_recording_a_reply_never_reads_the_thread_by_thread_id_alone(big_thread):
    # Every query touching messages while a reply is recorded uses an index that pins one row.
    db, thread_id, ctx = big_thread
    statements: list[tuple[str, object]] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "messages" in statement:
            statements.append((statement, parameters))

    now = datetime.now(UTC)
    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        with db.session() as session:
            logged = record_message(session, ctx, reply(THREAD_SIZE + 1, now), now)
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert logged.thread_id == thread_id and statements
    for plan in query_plans(db, statements):
        assert "SCAN messages" not in plan and "(thread_id=?)" not in plan, plan


def test_the_thread_lookup_index_exists(big_thread):
    # The migration and the model agree on the (thread_id, message_id) index.
    db, _, _ = big_thread
    with db.engine.connect() as connection:
        names = {row[1] for row in connection.execute(text("PRAGMA index_list('messages')"))}
    assert "ix_messages_thread_id_message_id" in names
