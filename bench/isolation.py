"""Scenario `isolation`: does a mailbox wait while another in the same process ingests a backlog?

One `mailwatch run` watches two mailboxes: A holds the shared backlog (full: 50,000
messages; --quick: 2,000) and B starts empty. Once B has synced, single customer
mails are APPENDed to B one at a time while A is still ingesting, and each is timed
APPEND → ack as in `latency`; sampling stops when A's backlog is all logged (or at
`SAMPLES`). The floor is `latency`'s bare IDLE client, measured in the same run just
after. Target (issue 18): B's p50 and p99 within 0.3 s of the floor's.
"""

from collections.abc import Callable

from bench import ingest
from bench.harness import Bench, percentile, sqlite_value, wait_until
from bench.latency import QUICK_SAMPLES, SAMPLE_GRACE_S, SYNCED, Appender, Samples, measure, run_floor, trace_lost
from bench.report import Result, Target

NAME = "isolation"
BACKLOG = 50_000
QUICK_BACKLOG = 2_000
SAMPLES = 200  # at most; sampling ends with A's backlog
FLOOR_SAMPLES = 50
FLOOR_BUDGET_S = 60.0
MARGIN_S = 0.3  # the "within 0.3 s of the bare IDLE floor"
READY_TIMEOUT_S = 120.0
LOGGED = "SELECT count(*) FROM messages"


def sample_during_backlog(bench: Bench, b_user: str, database, backlog: int, process,
                          log_name: str | None = None) -> tuple[list[float], dict | None]:
    """B's APPEND→ack times while A's backlog is logged (see `sample_while`)."""
    def going(seconds: list[float]) -> bool:
        return sqlite_value(database, LOGGED) - len(seconds) < backlog  # the samples are B's rows

    return sample_while(bench, b_user, process, going, log_name)


def sample_while(bench: Bench, b_user: str, process, going: Callable[[list[float]], bool],
                 log_name: str | None = None, prefix: str = "iso") -> tuple[list[float], dict | None]:
    """B's APPEND→ack times, one at a time while `going(samples so far)`; the lost sample's trace if one was lost.

    With `log_name`, the daemon's log: the trace then says what mailwatch logged about
    the lost mail and its ack (`lost_sample_trace`), read while the daemon still runs.
    """
    seconds: list[float] = []
    with Appender(bench, b_user, prefix) as appender:
        while len(seconds) < SAMPLES and going(seconds):
            if process.poll() is not None:
                raise RuntimeError(f"mailwatch run exited with {process.returncode}")
            samples = measure(appender, bench.sink, 1, SAMPLE_GRACE_S, SAMPLE_GRACE_S)
            if samples.lost:
                return seconds, lost_trace(bench, samples, log_name)
            seconds.extend(samples.seconds)
    return seconds, None


def lost_trace(bench: Bench, samples: Samples, log_name: str | None) -> dict:
    """The lost sample's trace from the daemon's log; without a log, its Message-ID and APPEND time."""
    if log_name is not None:
        return trace_lost(samples, bench.log_path(log_name), SAMPLE_GRACE_S)
    appended_at = samples.lost_appended_at.isoformat() if samples.lost_appended_at else None
    return {"message_id": samples.lost_message_id, "appended_at": appended_at, "waited_s": SAMPLE_GRACE_S}


def run(bench: Bench) -> list[Result]:
    """B's p50/p99 APPEND→ack during A's backlog, against the bare IDLE floor."""
    backlog = QUICK_BACKLOG if bench.options.quick else BACKLOG
    a_user = ingest.backlog(bench, backlog)
    b_user = bench.fresh_user("isolation")
    with Appender(bench, b_user, "iso0"):
        pass  # B's account exists before the daemon looks
    database = bench.root / "db" / "isolation.db"
    config = bench.write_config("isolation", user=b_user, database=f"sqlite:///{database}", ack=True,
                                max_per_hour=10 * SAMPLES, poll_interval=bench.options.poll_interval)
    config.write_text(config.read_text() + bench.mailbox_section("backlog", a_user))
    with bench.mailwatch("isolation-run", config, "run") as process:
        # B syncs in a moment; A's first sync is the whole backlog, so it is B's row that appears first.
        started = wait_until(lambda: (sqlite_value(database, SYNCED) > 0 and sqlite_value(database, LOGGED) > 0)
                             or process.poll() is not None, READY_TIMEOUT_S)
        if not started or process.poll() is not None:
            raise RuntimeError(f"mailwatch run did not start syncing (exit code {process.poll()})")
        seconds, lost = sample_during_backlog(bench, b_user, database, backlog, process, "isolation-run")
        logged_at_end = sqlite_value(database, LOGGED)
    floor = run_floor(bench, QUICK_SAMPLES if bench.options.quick else FLOOR_SAMPLES, FLOOR_BUDGET_S)
    details = {"backlog": backlog, "logged_when_sampling_ended": logged_at_end}
    return during_backlog(NAME, f"B APPEND→ack p50, A ingests {backlog:,}", "B APPEND→ack p99, same run",
                          seconds, lost, floor, MARGIN_S, details)


def during_backlog(scenario: str, p50_label: str, p99_label: str, seconds: list[float], lost: bool | dict | None,
                   floor: Samples, margin_s: float, details: dict) -> list[Result]:
    """The p50 and p99 rows of samples taken during a backlog, each to be within `margin_s` of the floor's.

    `lost`: whether a sample got no ack in time, or its trace (`sample_during_backlog`).
    """
    floor_p50, floor_p99 = floor.figures()
    p50, p99 = (percentile(seconds, 0.5), percentile(seconds, 0.99)) if seconds else (None, None)
    details = {**details, "samples": len(seconds), "lost_sample": bool(lost), "floor_samples": len(floor.seconds),
               "max_s": max(seconds, default=None)}
    if isinstance(lost, dict):
        details["lost_sample_trace"] = lost
    sides = {"timed_out": bool(lost) or not seconds, "floor_timed_out": floor.lost or not floor.seconds}
    return [
        Result(scenario, f"{p50_label} (n={len(seconds)})", "s", p50, floor_p50,
               Target.above_floor(floor_p50, margin_s), details, **sides),
        Result(scenario, p99_label, "s", p99, floor_p99,
               Target.above_floor(floor_p99, margin_s), **sides),
    ]
