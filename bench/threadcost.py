"""`python -m bench.threadcost`: the cost of one more message in a thread of N messages.

A scratch SQLite database gets one thread of N messages (bulk-inserted), then a few
replies to it are recorded through the real ingest path, each in its own transaction
as `poll` does. The figure is milliseconds per reply at each N; it must not grow with
N beyond the index depth (issue 11: it was 17.7 ms at N = 100,000, a scan per reply).
"""

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from mailwatch.clock import system_clock
from mailwatch.config import load_settings
from mailwatch.db.engine import Database
from mailwatch.db.models import Message, Thread
from mailwatch.testing.devservers import local_config
from mailwatch.imap import FetchedMessage
from mailwatch.pipeline.ingest import record_message
from mailwatch.service import Service

SIZES = (1_000, 10_000, 100_000)
REPLIES = 30  # timed replies per size
INSERT_CHUNK = 5_000  # rows per executemany while building the thread
ROOT_ID = "<root@customer.example>"


def build_thread(db: Database, size: int, start: datetime) -> int:
    """One open thread with `size` customer messages; returns its id."""
    with db.session() as session:
        thread = Thread(mailbox="support", subject="big", customer_address="ann@customer.example", status="open",
                        first_received_at=start, last_customer_at=start, clock=1, clock_started_at=start,
                        escalation_level=0, message_count=size, created_at=start)
        session.add(thread)
        session.flush()
        thread_id = thread.id
    for first in range(0, size, INSERT_CHUNK):
        rows = [_row(thread_id, n, start) for n in range(first, min(size, first + INSERT_CHUNK))]
        with db.session() as session:
            session.execute(insert(Message), rows)
    return thread_id


def _row(thread_id: int, n: int, start: datetime) -> dict:
    return {"mailbox": "support", "folder": "INBOX", "uidvalidity": 1, "uid": n + 1,
            "message_id": ROOT_ID if n == 0 else f"<m{n}@customer.example>", "received_at": start + timedelta(seconds=n),
            "first_seen_at": start, "category": "customer", "thread_id": thread_id, "from_address": "ann@customer.example"}


def reply(uid: int, now: datetime) -> FetchedMessage:
    header = (f"From: Ann <ann@customer.example>\r\nTo: support@acme.example\r\nSubject: Re: big\r\n"
              f"Message-ID: <r{uid}@customer.example>\r\nIn-Reply-To: {ROOT_ID}\r\nReferences: {ROOT_ID}\r\n\r\n")
    return FetchedMessage(uid=uid, received_at=now, flags=(), size=200, header=header.encode(), body_prefix=b"more\r\n")


def measure(root: Path, size: int) -> float:
    """Median milliseconds to record one reply into a thread of `size` messages."""
    (root / "pw").write_text("x\n")
    config = root / f"t{size}.toml"
    config.write_text(local_config(database=f"sqlite:///{root / f't{size}.db'}", imap_port=1, imap_user="u",
                                   password_file=root / "pw"))
    settings = load_settings(config)
    db = Database(settings.service.database)
    db.ensure_schema()
    now = datetime.now(UTC)
    build_thread(db, size, now - timedelta(days=30))
    ctx = replace(Service(settings, db, system_clock).folder_context(settings.mailboxes[0], "INBOX"), uidvalidity=1)
    timings = []
    for n in range(REPLIES):
        started = time.perf_counter()
        with db.session() as session:
            logged = record_message(session, ctx, reply(size + 1 + n, now), now)
        timings.append(time.perf_counter() - started)
        assert logged.thread_id is not None
    db.dispose()
    return statistics.median(timings) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.threadcost", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="thread sizes, comma-separated")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mailwatch-threadcost-") as folder:
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"thread of {size:>7,} messages: {measure(Path(folder), size):6.2f} ms per new message", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
