"""Cost of `Outbox.drain` alone: CPU seconds, SQL statements and transactions per sent mail.

Queues N acknowledgment-sized mails straight into a scratch database (no IMAP, no ingest),
drains them to an aiosmtpd sink running in a child process (so its CPU is not counted),
and prints one JSON line. Usage:

    .venv/bin/python scripts/drain_cost.py [--count 300] [--url sqlite|postgresql+psycopg://…] [--drains 1]

`--drains K` splits the mails over K drains of one event loop, as the daemon's sender
task sees them, so that kept connections show up in the sink's connection count.
"""

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import structlog
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from mailwatch.db.engine import Database
from mailwatch.pipeline.outbox import Outbox, enqueue
from mailwatch.smtp import SmtpEndpoint, SmtpSender
from mailwatch.testing.devservers import free_port, wait_for_port

SINK = """
import sys, time
from mailwatch.testing.devservers import SmtpSink
sink = SmtpSink(int(sys.argv[1])); sink.start()
while True:
    time.sleep(3600)
"""


def queue(db: Database, start: int, count: int) -> None:
    now = datetime.now(UTC)
    with db.session() as session:
        for n in range(start, start + count):
            message = EmailMessage()
            message["From"], message["To"] = "support@acme.example", f"c{n}@example.com"
            message["Subject"], message["Message-ID"] = f"Re: help {n}", f"<mailwatch.{n}@acme.example>"
            message.set_content("We got your mail and will answer within one business day.\n" * 12)
            enqueue(session, kind="ack", dedupe_key=f"ack:{n}", message=message, recipient=f"c{n}@example.com",
                    envelope_from="support@acme.example", now=now)


class Counts:
    def __init__(self, db: Database) -> None:
        self.statements = self.parameter_sets = self.commits = 0
        self.resume(db)

    def pause(self, db: Database) -> None:
        event.remove(db.engine, "before_cursor_execute", self.on_execute)
        event.remove(db.engine, "commit", self.on_commit)

    def resume(self, db: Database) -> None:
        event.listen(db.engine, "before_cursor_execute", self.on_execute)
        event.listen(db.engine, "commit", self.on_commit)

    def on_execute(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements += 1
        self.parameter_sets += len(parameters) if executemany else 1

    def on_commit(self, conn) -> None:
        self.commits += 1


class ThreadCpu:
    """CPU seconds spent inside a blocking method (it runs whole in one worker thread)."""

    def __init__(self, owner: object, name: str) -> None:
        self.seconds, self.method = 0.0, getattr(owner, name)
        setattr(owner, name, self)

    def __call__(self, *args, **kwargs):
        started = time.thread_time()
        try:
            return self.method(*args, **kwargs)
        finally:
            self.seconds += time.thread_time() - started


async def drain_all(outbox: Outbox, db: Database, count: int, drains: int, counts: Counts) -> tuple[int, float]:
    per_drain = count // drains
    sent, cpu_s = 0, 0.0
    kept = getattr(outbox, "kept_connections", contextlib.nullcontext)  # absent before issue 18
    async with kept():
        for n in range(drains):
            counts.pause(db)
            queue(db, n * per_drain, per_drain)
            counts.resume(db)
            started = time.process_time()
            sent += (await outbox.drain()).sent
            cpu_s += time.process_time() - started
    return sent, cpu_s


@contextlib.contextmanager
def scratch(url: str, folder: Path) -> Iterator[str]:
    """A fresh SQLite file, or a fresh database on the PostgreSQL server `url` names (dropped after)."""
    if url == "sqlite":
        yield f"sqlite:///{folder / 'drain.db'}"
        return
    admin = create_engine(make_url(url), isolation_level="AUTOCOMMIT")
    name = f"drain_cost_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--drains", type=int, default=1)
    parser.add_argument("--url", default="sqlite")
    args = parser.parse_args()
    # The events are what the drain costs in production too, but not on this terminal.
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    try:
        wait_for_port(port, 10)
        with tempfile.TemporaryDirectory() as folder, scratch(args.url, Path(folder)) as url:
            db = Database(url)
            db.ensure_schema()
            outbox = Outbox(db, lambda: SmtpSender(SmtpEndpoint("127.0.0.1", port, "none")),
                            lambda: datetime.now(UTC))
            counts = Counts(db)
            # The database side: claims and writes (before issue 18: mark_sending and record).
            database = [ThreadCpu(outbox, name) for name in ("claim", "write", "mark_sending", "record")
                        if hasattr(outbox, name)]
            sent, cpu_s = asyncio.run(drain_all(outbox, db, args.count, args.drains, counts))
            db.dispose()
    finally:
        sink.kill()
    print(json.dumps({"sent": sent, "drain_cpu_s": round(cpu_s, 3), "cpu_ms_per_mail": round(1000 * cpu_s / sent, 3),
                      "database_cpu_ms_per_mail": round(1000 * sum(d.seconds for d in database) / sent, 3),
                      "statements_per_mail": round(counts.statements / sent, 2),
                      "parameter_sets_per_mail": round(counts.parameter_sets / sent, 2),
                      "commits_per_mail": round(counts.commits / sent, 2)}))


if __name__ == "__main__":
    main()
