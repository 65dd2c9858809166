"""Scenario `ingest`: a 10,000-message backlog logged by one `mailwatch poll`.

mailwatch: the real CLI in a subprocess, acknowledgments off, SQLite in WAL mode,
timed from spawn until it exits having logged every message (checked in the database);
a poll of an empty mailbox gives its fixed start-up cost, so the second row compares the
cost per message with the floor's own (interpreter start left out on both sides).
Floor: `bench.floors ingest` — the same UID FETCH items in the same batches, and one
executemany per batch into SQLite, nothing parsed. Three rounds of both, the median
round reported (`harness.median_round`). Target: ≤ 2.5× the floor (issue 18).
"""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bench.corpus import CorpusSpec, now_utc
from bench.harness import Bench, ChildCpu, Stopwatch, finish, median_round, read_json_line, rounds, sqlite_value
from bench.report import Result, Target

NAME = "ingest"
BACKLOG_USER = "backlog"  # shared with `memory`: both only read the folder
MESSAGES = 10_000
QUICK_MESSAGES = 1_000
BACKLOG_SPAN = timedelta(days=3)  # the backlog arrived over the last three days
TARGET = Target(2.5, on_ratio=True)  # issue 18
RUN_TIMEOUT_S = 300.0


def backlog_spec(count: int) -> CorpusSpec:
    """The shared backlog corpus (seeded, so every run logs the same mail)."""
    return CorpusSpec(count=count, seed=6, end=now_utc() - timedelta(minutes=5), span=BACKLOG_SPAN)


def backlog(bench: Bench, count: int) -> str:
    """The IMAP user whose INBOX holds the backlog, loaded once per run."""
    return bench.mailbox(f"{BACKLOG_USER}{count}", backlog_spec(count))


@dataclass(frozen=True)
class Run:
    """One timed subprocess: wall seconds, its CPU seconds, where it wrote."""

    wall_s: float
    cpu_s: float
    database: Path


def poll(bench: Bench, user: str, name: str) -> Run:
    """One `mailwatch poll` of `user`'s INBOX into a new SQLite database."""
    config = bench.write_config(name, user=user, database=bench.sqlite_url(name))
    watch = Stopwatch()
    with ChildCpu() as cpu, bench.mailwatch(f"{name}-poll", config, "poll") as process:
        finish(process, RUN_TIMEOUT_S)
    return Run(watch.elapsed_s, cpu.seconds, bench.root / "db" / f"{name}.db")


def run_mailwatch(bench: Bench, user: str, expected: int, name: str) -> Run:
    """`mailwatch poll` logging the whole folder (checked in its database)."""
    run = poll(bench, user, name)
    logged = sqlite_value(run.database, "SELECT count(*) FROM messages")
    if logged != expected:
        raise RuntimeError(f"mailwatch logged {logged} of {expected} messages")
    return run


def run_floor(bench: Bench, user: str, expected: int, db_name: str = "ingest-floor") -> tuple[Run, dict]:
    """The bare FETCH + INSERT floor over the same folder; and what it reported."""
    path = bench.root / "db" / f"{db_name}.db"
    path.parent.mkdir(exist_ok=True)
    args = ("ingest", "--port", str(bench.dovecot.port), "--user", user, "--db", str(path))
    watch = Stopwatch()
    with ChildCpu() as cpu, bench.floor(db_name, *args) as process:
        figures = read_json_line(process, RUN_TIMEOUT_S)
        finish(process, RUN_TIMEOUT_S)
    if figures["stored"] != expected:
        raise RuntimeError(f"the floor stored {figures['stored']} of {expected} messages")
    return Run(watch.elapsed_s, cpu.seconds, path), figures


def run(bench: Bench) -> list[Result]:
    """Time mailwatch and the floor over the same backlog."""
    count = QUICK_MESSAGES if bench.options.quick else MESSAGES
    user = backlog(bench, count)
    empty = poll(bench, bench.fresh_user("empty"), "ingest-empty")
    pairs = [(run_mailwatch(bench, user, count, f"ingest-{number}"),
              *run_floor(bench, user, count, f"ingest-floor-{number}")) for number in range(rounds(bench.options))]
    mailwatch, floor, figures = median_round(pairs, lambda pair: pair[0].wall_s / pair[1].wall_s)
    details = {"messages": count, "rounds_s": [[round(m.wall_s, 2), round(f.wall_s, 2)] for m, f, _ in pairs],
               "mailwatch_msgs_per_s": round(count / mailwatch.wall_s, 1),
               "floor_msgs_per_s": round(count / floor.wall_s, 1), "empty_poll_s": round(empty.wall_s, 2),
               "journal_mode": sqlite_value(mailwatch.database, "PRAGMA journal_mode"),
               "load_s": bench.setup_s.get(f"load_{user}")}
    return [
        Result(NAME, f"log {count:,} msgs (poll)", "s", mailwatch.wall_s, floor.wall_s, TARGET, details),
        Result(NAME, "per message, start-up left out", "ms", (mailwatch.wall_s - empty.wall_s) / count * 1000,
               figures["work_s"] / count * 1000),
        Result(NAME, "CPU seconds (user+sys)", "s", mailwatch.cpu_s, floor.cpu_s),
    ]
