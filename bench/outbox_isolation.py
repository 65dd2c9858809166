"""Scenario `outbox-isolation`: is a customer of mailbox B acked while A's outbox drains a backlog?

A's INBOX holds 10,000 new customers (--quick: 1,000). A first `mailwatch poll` logs
them and queues their acknowledgments while the SMTP server is down (a closed port), so
the outbox holds the whole backlog. Then one `mailwatch run` watches A and B with the
server back: while A's acks are sent, single customer mails are APPENDed to B one at a
time and timed APPEND → ack as in `latency`; sampling stops when A's outbox is down to
its last round. The floor is `latency`'s bare IDLE client, measured just after. Target
(issue 18): B's p50 and p99 within 0.3 s of the floor's.

`per_sender_interval` is 1 s here: the backlog's customers and B's sample customers are
numbered from the same pool, and a repeat customer rightly gets no second ack in a day.
"""

import socket
from datetime import timedelta

from bench.corpus import CorpusSpec, now_utc
from bench.harness import Bench, finish, sqlite_value, wait_until
from bench.isolation import (FLOOR_BUDGET_S, FLOOR_SAMPLES, MARGIN_S, READY_TIMEOUT_S, SAMPLES, during_backlog,
                             sample_while)
from bench.latency import QUICK_SAMPLES, Appender, run_floor
from bench.report import Result

NAME = "outbox-isolation"
BACKLOG = 10_000
QUICK_BACKLOG = 1_000
ARRIVAL_SPAN = timedelta(minutes=10)
PENDING = "SELECT count(*) FROM outbox WHERE status = 'pending'"
SYNCED_BOTH = "SELECT count(*) FROM folder_state WHERE last_sync_at IS NOT NULL"
LAST_ROUND = 300  # sampling ends when A's outbox is down to one round (pipeline.outbox.CLAIM_BATCH)
QUEUE_TIMEOUT_S = 600.0


def closed_port() -> int:
    """A loopback port nobody listens on: the SMTP server of the first poll is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(bench: Bench, a_user: str, b_user: str, backlog: int, database: str, smtp_port: int):
    config = bench.write_config("outbox-isolation", user=b_user, database=database, ack=True, max_age="1d",
                                max_per_hour=4 * (backlog + SAMPLES), poll_interval=bench.options.poll_interval)
    text = config.read_text().replace('max_age = "1d"', 'max_age = "1d"\nper_sender_interval = "1s"')
    if bench.sink.port != smtp_port:
        text = text.replace(f"port = {bench.sink.port}\n", f"port = {smtp_port}\n")
    config.write_text(text + bench.mailbox_section("backlog", a_user))
    return config


def queue_backlog(bench: Bench, a_user: str, b_user: str, backlog: int, database) -> int:
    """The first poll, with the SMTP server down: A's acks all wait in the outbox; how many."""
    config = write_config(bench, a_user, b_user, backlog, f"sqlite:///{database}", closed_port())
    with bench.mailwatch("outbox-isolation-queue", config, "poll") as process:
        finish(process, QUEUE_TIMEOUT_S)
    return int(sqlite_value(database, PENDING))


def run(bench: Bench) -> list[Result]:
    """B's p50/p99 APPEND→ack while A's outbox backlog is sent, against the bare IDLE floor."""
    backlog = QUICK_BACKLOG if bench.options.quick else BACKLOG
    spec = CorpusSpec(count=backlog, seed=9, end=now_utc(), span=ARRIVAL_SPAN, distinct_senders=True, prefix="ob")
    a_user = bench.mailbox(f"outbox{backlog}", spec)
    b_user = bench.fresh_user("outbox-isolation")
    with Appender(bench, b_user, "obi0"):
        pass  # B's account exists before the daemon looks
    database = bench.root / "db" / "outbox-isolation.db"
    queued = queue_backlog(bench, a_user, b_user, backlog, database)
    if queued < backlog // 2:
        raise RuntimeError(f"only {queued} of {backlog} acknowledgments were queued")
    config = write_config(bench, a_user, b_user, backlog, f"sqlite:///{database}", bench.sink.port)
    with bench.mailwatch(f"{NAME}-run", config, "run") as process:
        if not wait_until(lambda: process.poll() is not None or sqlite_value(database, PENDING) < queued,
                          READY_TIMEOUT_S) or process.poll() is not None:
            raise RuntimeError(f"mailwatch run did not start sending (exit code {process.poll()})")
        seconds, lost = sample_while(bench, b_user, process, lambda _: sqlite_value(database, PENDING) > LAST_ROUND,
                                     f"{NAME}-run", prefix="obi")
        pending_at_end = sqlite_value(database, PENDING)
    floor = run_floor(bench, QUICK_SAMPLES if bench.options.quick else FLOOR_SAMPLES, FLOOR_BUDGET_S)
    details = {"backlog_mails": backlog, "acks_queued": queued, "pending_when_sampling_ended": pending_at_end}
    return during_backlog(NAME, f"B APPEND→ack p50, A sends {queued:,} acks", "B APPEND→ack p99, same run",
                          seconds, lost, floor, MARGIN_S, details)
