"""Scenario `recovery`: how soon `mailwatch run` is back in business after its IMAP server was down.

The run's Dovecot is stopped (as a crash or reboot would: every connection dropped)
while `mailwatch run` watches a mailbox in IDLE, kept down for an outage of N seconds
(--quick: 10 s; full: 35 s and 120 s), and started again. Two figures per outage:
"server back → reconnected", from Dovecot's port accepting again to the daemon's
`mailbox_watching` log event (the first one after the restart), and "APPEND → ack"
for the first mail APPENDed once the server is back. Target for the first: under
5 s whatever the outage (issue 18). An outage whose figure never comes is a TIMEOUT.
There is no floor: a bare client would reconnect at once because it does not wait.
"""

import time
from datetime import UTC, datetime
from functools import partial

from bench.harness import Bench, log_events, sqlite_value, wait_until
from bench.latency import REPLY_POLL_S, SYNCED, Appender, answered
from bench.report import Result, Target

NAME = "recovery"
OUTAGES_S = (35.0, 120.0)
QUICK_OUTAGES_S = (10.0,)
RECONNECT_TARGET = Target(5.0, inclusive=False)
READY_TIMEOUT_S = 60.0
RECONNECT_TIMEOUT_S = 60.0  # well past the target: a figure this late is a failure anyway
ACK_TIMEOUT_S = 60.0
WATCHING = "mailbox_watching"


def reconnected_at(log: list[dict], after: datetime) -> datetime | None:
    """When the daemon said it watches the folder again, the first time after `after`."""
    for event in log:
        if event.get("event") == WATCHING and "timestamp" in event:
            at = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))
            if at >= after:
                return at
    return None


def one_outage(bench: Bench, user: str, outage_s: float, number: int) -> list[Result]:
    """Stop Dovecot for `outage_s`, start it, time the reconnect and the first new mail's ack."""
    log_path = bench.log_path("recovery-run")
    down = datetime.now(UTC)
    bench.dovecot.stop()
    time.sleep(outage_s)
    bench.dovecot.start()  # returns once the port accepts
    back = datetime.now(UTC)
    with Appender(bench, user, f"rec{int(outage_s)}") as appender:
        appender.count = number  # a new customer each outage: a second ack to one within the hour is held back
        since = len(bench.sink.received)
        started = time.perf_counter()
        message_id = appender.append()
        acked = wait_until(partial(answered, bench.sink, since, message_id), ACK_TIMEOUT_S, REPLY_POLL_S)
        ack_s = time.perf_counter() - started
    # Searched from `down`: a reconnect in the few ms between the port opening and `back` still counts (as 0 s).
    seen = wait_until(lambda: reconnected_at(log_events(log_path), down) is not None, RECONNECT_TIMEOUT_S, 0.1)
    at = reconnected_at(log_events(log_path), down) if seen else None
    reconnect_s = max(0.0, (at - back).total_seconds()) if at else None
    label = f"{outage_s:g} s outage"
    details = {"outage_s": outage_s, "server_back_at": back.isoformat(), "reconnected_at": at and at.isoformat()}
    return [
        Result(NAME, f"server back → reconnected ({label})", "s", reconnect_s, target=RECONNECT_TARGET,
               details=details, timed_out=not seen),
        Result(NAME, f"APPEND after back → ack ({label})", "s", ack_s if acked else None, timed_out=not acked),
    ]


def run(bench: Bench) -> list[Result]:
    """Each outage in turn against one running daemon."""
    user = bench.fresh_user("recovery")
    database = bench.root / "db" / "recovery.db"
    config = bench.write_config("recovery", user=user, database=f"sqlite:///{database}", ack=True,
                                max_per_hour=1000, poll_interval=bench.options.poll_interval)
    outages = QUICK_OUTAGES_S if bench.options.quick else OUTAGES_S
    with Appender(bench, user, "rec0"):
        pass  # the account exists (Dovecot creates it on first login) before the daemon looks
    rows: list[Result] = []
    with bench.mailwatch("recovery-run", config, "run") as process:
        if not wait_until(lambda: sqlite_value(database, SYNCED) > 0 or process.poll() is not None, READY_TIMEOUT_S):
            raise RuntimeError("mailwatch run did not finish its first sync")
        if process.poll() is not None:
            raise RuntimeError(f"mailwatch run exited with {process.returncode}")
        for number, outage_s in enumerate(outages):
            rows.extend(one_outage(bench, user, outage_s, number))
    return rows
