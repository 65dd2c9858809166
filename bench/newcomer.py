"""Scenario `newcomer`: how long a customer waits who writes to a mailbox while its own backlog is logged.

One `mailwatch run` watches one mailbox holding a backlog (full: 10,000 messages;
--quick: 2,000; its own copy, as APPENDs here would change the shared one). Once the
first backlog rows are logged, single customer mails are APPENDed to the same mailbox
one at a time and each is timed APPEND → ack as in `latency`, until the backlog is all
logged. In UID order each would wait for the rest of the backlog; the sync takes mail
that arrived since it began between the backlog's batches (pipeline/sync.py), so a
newcomer waits behind one batch. Floor: `latency`'s bare IDLE client, measured in the
same run. Target (issue 18: "should not wait for the whole backlog"): p99 within 1 s
of the floor's, against the several seconds the whole backlog takes (shown beside it).
"""

from bench import ingest
from bench.harness import Bench, Stopwatch, sqlite_value, wait_until
from bench.isolation import (
    FLOOR_BUDGET_S,
    FLOOR_SAMPLES,
    LOGGED,
    READY_TIMEOUT_S,
    during_backlog,
    sample_during_backlog,
)
from bench.latency import QUICK_SAMPLES, run_floor
from bench.report import Result

NAME = "newcomer"
BACKLOG = 10_000
QUICK_BACKLOG = 2_000
MARGIN_S = 1.0
BACKLOG_TIMEOUT_S = 600.0


def run(bench: Bench) -> list[Result]:
    """Newcomers' p50/p99 APPEND→ack during their own mailbox's backlog, against the IDLE floor."""
    backlog = QUICK_BACKLOG if bench.options.quick else BACKLOG
    user = bench.mailbox(f"{NAME}{backlog}", ingest.backlog_spec(backlog))
    database = bench.root / "db" / f"{NAME}.db"
    config = bench.write_config(NAME, user=user, database=f"sqlite:///{database}", ack=True, max_per_hour=1000,
                                poll_interval=bench.options.poll_interval)
    watch = Stopwatch()
    with bench.mailwatch(f"{NAME}-run", config, "run") as process:
        if not wait_until(lambda: sqlite_value(database, LOGGED) > 0 or process.poll() is not None, READY_TIMEOUT_S):
            raise RuntimeError("mailwatch run logged nothing of its backlog")
        seconds, lost = sample_during_backlog(bench, user, database, backlog, process, f"{NAME}-run")
        done = wait_until(lambda: sqlite_value(database, LOGGED) - len(seconds) >= backlog, BACKLOG_TIMEOUT_S)
        backlog_s = watch.elapsed_s
    floor = run_floor(bench, QUICK_SAMPLES if bench.options.quick else FLOOR_SAMPLES, FLOOR_BUDGET_S)
    rows = during_backlog(NAME, f"APPEND→ack p50 during own {backlog:,} backlog", "APPEND→ack p99, same run",
                          seconds, lost, floor, MARGIN_S, {"backlog": backlog})
    return [*rows, Result(NAME, "the whole backlog logged (start → last row)", "s", backlog_s if done else None,
                          timed_out=not done)]
