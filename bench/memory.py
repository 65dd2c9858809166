"""Scenario `memory`: resident memory of `mailwatch run` while it ingests a backlog.

`mailwatch run` (acknowledgments off, SQLite) starts on the 10,000-message backlog of
`ingest`; /proc/PID/status is sampled until every message is logged: VmHWM is the
peak, VmRSS a few seconds later the steady size. A full run then does the same on a
50,000-message backlog, to show the peak does not grow with the backlog (about two
minutes, loading included; `--no-memory-large` skips it, `--quick` never runs it).
Floor: the peak of `bench.floors ingest` over the same folder: the interpreter plus
one fetched batch.
Target: peak < 150 MB.
"""

import time

from bench import ingest
from bench.harness import Bench, RssSampler, Stopwatch, sqlite_value, wait_until
from bench.report import Result, Target

NAME = "memory"
LARGE_MESSAGES = 50_000
TARGET = Target(150, inclusive=False)
STEADY_WAIT_S = 5.0  # after the backlog: idle time before the steady RSS is read
INGEST_TIMEOUT_S = 400.0
KIB_PER_MB = 1024  # figures are MiB, printed as MB like `ps` and `top` do


def daemon_memory(bench: Bench, user: str, count: int, name: str) -> dict:
    """Peak and steady RSS (MiB) of `mailwatch run` logging `count` messages, and how long it took."""
    database = bench.root / "db" / f"{name}.db"
    config = bench.write_config(name, user=user, database=f"sqlite:///{database}")
    watch = Stopwatch()
    with bench.mailwatch(name, config, "run") as process, RssSampler(process.pid) as sampler:
        done = wait_until(lambda: sqlite_value(database, "SELECT count(*) FROM messages") >= count
                          or process.poll() is not None, INGEST_TIMEOUT_S, step_s=0.25)
        ingest_s = watch.elapsed_s
        if not done or process.poll() is not None:
            raise RuntimeError(f"mailwatch run did not log {count} messages (exit code {process.poll()})")
        peak_during_ingest = sampler.peak_kb
        time.sleep(STEADY_WAIT_S)
        sampler.sample()
        figures = {"peak_mb": sampler.peak_kb / KIB_PER_MB, "peak_during_ingest_mb": peak_during_ingest / KIB_PER_MB,
                   "steady_mb": sampler.last_rss_kb / KIB_PER_MB, "ingest_s": round(ingest_s, 1)}
    return figures


def floor_peak_mb(bench: Bench, user: str, count: int) -> float:
    """Peak RSS (MiB) of the bare ingest floor over the same folder."""
    _run, figures = ingest.run_floor(bench, user, count, db_name="memory-floor")
    return figures["peak_rss_kb"] / KIB_PER_MB


def run(bench: Bench) -> list[Result]:
    """Peak and steady RSS on the shared backlog; in a full run also on 50,000."""
    count = ingest.QUICK_MESSAGES if bench.options.quick else ingest.MESSAGES
    user = ingest.backlog(bench, count)
    figures = daemon_memory(bench, user, count, "memory-run")
    floor_mb = floor_peak_mb(bench, user, count)
    rows = [
        Result(NAME, f"peak RSS, run on {count:,} backlog", "MB", figures["peak_mb"], floor_mb, TARGET, figures),
        Result(NAME, "steady RSS after the backlog", "MB", figures["steady_mb"]),
    ]
    if bench.options.memory_large and not bench.options.quick:
        rows.append(large_backlog(bench, floor_mb))
    return rows


def large_backlog(bench: Bench, floor_mb: float) -> Result:
    """The same on 50,000 messages: flat memory means the peak barely moves."""
    user = ingest.backlog(bench, LARGE_MESSAGES)
    figures = daemon_memory(bench, user, LARGE_MESSAGES, "memory-large-run")
    figures["load_s"] = bench.setup_s.get(f"load_{user}")
    return Result(NAME, f"peak RSS, run on {LARGE_MESSAGES:,} backlog", "MB", figures["peak_mb"], floor_mb,
                  TARGET, figures)
