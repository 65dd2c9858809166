"""Scenario `latency`: APPEND-to-acknowledgment time under `mailwatch run`.

A customer message is APPENDed (over a connection opened beforehand) and the clock
stops when the acknowledgment that answers it (its Message-ID in In-Reply-To or
References) reaches the SMTP sink; then the next one, 100 in all. The daemon's
`poll_interval` is what an operator sets (60 s by default; `--poll-interval` or
MAILWATCH_BENCH_POLL_INTERVAL changes it) and `idle` is left at its default, so the
figure shows whatever the daemon does: IDLE once it has it, polling until then.
Polling makes each sample last up to a poll interval, so each side stops after a time
budget and reports how many samples it got. Floor: `bench.floors idle`, a bare IDLE
client that fetches each new message and answers it over one open SMTP connection.
Targets: median within 0.1 s of the floor's (Dovecot reports new mail to IDLE about
500 ms after it arrives, so an absolute 0.5 s cannot be met by any client), p99 < 1.5 s.
"""

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType

from imapclient import IMAPClient

from bench.corpus import CUSTOMER_POOL, CorpusSpec, Generator, Mail, now_utc
from bench.harness import Bench, log_events, percentile, read_json_line, sqlite_value, wait_until
from bench.report import Result, Target
from mailwatch.durations import parse_duration
from mailwatch.testing.devservers import SmtpSink

NAME = "latency"
SAMPLES = 100
QUICK_SAMPLES = 20
BUDGET_S = 120.0  # per side: ample for 100 samples with IDLE; two when polling every 60 s
QUICK_BUDGET_S = 45.0
SAMPLE_GRACE_S = 20.0  # a sample may take a poll interval plus this before it counts as lost
READY_TIMEOUT_S = 60.0
SETTLE_S = 1.0  # after the first sync, so that start-up work is not measured
REPLY_POLL_S = 0.005  # how often the sink is checked for the answer
MEDIAN_MARGIN_S = 0.1  # over the floor's median: what mailwatch's own work may add
P99_TARGET = Target(1.5, inclusive=False)
SYNCED = "SELECT count(*) FROM folder_state WHERE last_sync_at IS NOT NULL"
# A sample's customer must be new to the daemon. The shared corpora's customers are numbered
# below CUSTOMER_POOL, and a backlog's last hour of mail gets acks: a sample from one of them
# rightly got none (per_sender_interval, a day) and counted as lost (bench isolation, 1 of 75).
SAMPLE_CUSTOMERS_FROM = CUSTOMER_POOL
# What the daemon said about a lost sample and its ack, and what its watchers did meanwhile.
TRACED_FIELDS = ("timestamp", "event", "mailbox", "uid", "outcome", "reason", "error", "retry_in_s")
WATCHER_EVENTS = {"folder_synced", "mailbox_watching", "mailbox_retry", "mailbox_watch_crashed",
                  "watcher_still_busy", "outbox_drain_failed", "batch_retried_singly"}
TRACE_BEFORE = timedelta(seconds=2)  # watcher events this long before the APPEND are shown too


@dataclass
class Samples:
    """APPEND-to-answer times in seconds; `lost` when one never got its answer in time.

    A lost sample is not in `seconds`: how long it was waited for is the timeout, not a
    measurement, and the row it would have gone into says TIMEOUT instead.
    """

    seconds: list[float] = field(default_factory=list)
    lost: bool = False
    budget_exhausted: bool = False
    lost_message_id: str | None = None  # the sample that got no answer: look for it in the daemon's log
    lost_appended_at: datetime | None = None  # when it was APPENDed (UTC)
    lost_trace: dict | None = None  # what the daemon logged about it (`lost_sample_trace`)

    def figures(self) -> tuple[float | None, float | None]:
        """Median and p99 of the samples that were answered."""
        if not self.seconds:
            return None, None
        return percentile(self.seconds, 0.5), percentile(self.seconds, 0.99)


def sample_generator(prefix: str) -> Generator:
    """The generator of sample mails: each number a customer of its own."""
    return Generator(CorpusSpec(count=0, seed=3, end=now_utc(), span=timedelta(0), distinct_senders=True,
                                prefix=prefix))


def sample_mail(generator: Generator, number: int) -> Mail:
    """Sample mail `number` (INTERNALDATE: now), from a customer no shared corpus has."""
    return generator.mail(SAMPLE_CUSTOMERS_FROM + number, now_utc())


class Appender:
    """APPENDs one generated customer message at a time over one open IMAP connection."""

    def __init__(self, bench: Bench, user: str, prefix: str) -> None:
        self.generator = sample_generator(prefix)
        self.client = IMAPClient(bench.dovecot.host, port=bench.dovecot.port, ssl=False, timeout=30)
        self.client.login(user, bench.dovecot.password)
        self.count = 0

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.client.logout()

    def append(self) -> str:
        """APPEND the next message (INTERNALDATE: now); its Message-ID."""
        mail = sample_mail(self.generator, self.count)
        self.client.append("INBOX", mail.raw)
        self.count += 1
        return mail.message_id


def answered(sink: SmtpSink, since: int, message_id: str) -> bool:
    """Whether a mail that arrived after index `since` answers `message_id`."""
    needle = message_id.encode()
    return any(needle in mail.content.split(b"\r\n\r\n", 1)[0] for mail in sink.received[since:])


def measure(appender: Appender, sink: SmtpSink, count: int, budget_s: float, timeout_s: float) -> Samples:
    """Up to `count` samples, one at a time, within `budget_s`."""
    samples = Samples()
    deadline = time.monotonic() + budget_s
    while len(samples.seconds) < count:
        if time.monotonic() >= deadline:
            samples.budget_exhausted = True
            break
        since = len(sink.received)
        started, appended_at = time.perf_counter(), datetime.now(UTC)
        message_id = appender.append()
        if not wait_until(partial(answered, sink, since, message_id), timeout_s, REPLY_POLL_S):
            samples.lost, samples.lost_message_id, samples.lost_appended_at = True, message_id, appended_at
            break
        samples.seconds.append(time.perf_counter() - started)
    return samples


def lost_sample_trace(log_path: Path, message_id: str, appended_at: datetime, waited_s: float) -> dict:
    """What the daemon logged about a lost sample: was it logged, its ack queued, suppressed or sent, when?

    With the watchers' syncs and retries from just before the APPEND to the end of the
    wait: an empty `daemon_log` with no sync after the APPEND means the mail was never seen.
    """
    events = log_events(log_path)
    about = [event for event in events if event.get("message_id") == message_id]
    acks = {event["ack_message_id"] for event in about if "ack_message_id" in event}
    about += [event for event in events if event.get("message_id") in acks]  # its ack's mail_sent, deferrals
    start, end = appended_at - TRACE_BEFORE, appended_at + timedelta(seconds=waited_s)
    watchers = [event for event in events if event.get("event") in WATCHER_EVENTS
                and start <= _logged_at(event) <= end]
    return {"message_id": message_id, "appended_at": appended_at.isoformat(), "waited_s": waited_s,
            "daemon_log": [_traced(event) for event in sorted(about, key=_logged_at)],
            "watchers_meanwhile": [_traced(event) for event in sorted(watchers, key=_logged_at)]}


def trace_lost(samples: Samples, log_path: Path, waited_s: float) -> dict | None:
    """The lost sample's trace (None when none was lost), also told on stderr at once."""
    if samples.lost_message_id is None or samples.lost_appended_at is None:
        return None
    trace = lost_sample_trace(log_path, samples.lost_message_id, samples.lost_appended_at, waited_s)
    said = ", ".join(f"{event['event']} {event.get('outcome', '')}".strip() for event in trace["daemon_log"])
    print(f"bench: sample {trace['message_id']} APPENDed {trace['appended_at']} got no ack in {waited_s:g} s; "
          f"mailwatch logged {said or 'nothing about it'}; {len(trace['watchers_meanwhile'])} watcher events "
          f"meanwhile (details in the JSON)", file=sys.stderr, flush=True)
    return trace


def _logged_at(event: dict) -> datetime:
    try:
        return datetime.fromisoformat(str(event.get("timestamp", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _traced(event: dict) -> dict:
    return {key: event[key] for key in TRACED_FIELDS if key in event}


def run_mailwatch(bench: Bench, count: int, budget_s: float) -> tuple[Samples, list[str]]:
    """Samples under `mailwatch run`; and how it said it watches the folder (its log's `mode` values)."""
    user = bench.fresh_user("latency")
    config = bench.write_config("latency", user=user, database=bench.sqlite_url("latency"), ack=True,
                                max_per_hour=10 * count, poll_interval=bench.options.poll_interval)
    timeout_s = parse_duration(bench.options.poll_interval).total_seconds() + SAMPLE_GRACE_S
    with Appender(bench, user, "lat") as appender, bench.mailwatch("latency-run", config, "run") as process:
        database = bench.root / "db" / "latency.db"
        if not wait_until(lambda: sqlite_value(database, SYNCED) > 0 or process.poll() is not None, READY_TIMEOUT_S):
            raise RuntimeError("mailwatch run did not finish its first sync")
        if process.poll() is not None:
            raise RuntimeError(f"mailwatch run exited with {process.returncode}")
        time.sleep(SETTLE_S)
        samples = measure(appender, bench.sink, count, budget_s, timeout_s)
        samples.lost_trace = trace_lost(samples, bench.log_path("latency-run"), timeout_s)
    events = log_events(bench.log_path("latency-run"))
    modes = {str(event["mode"]) for event in events if "mode" in event}
    modes |= {event["event"] for event in events if "idle" in str(event.get("event", "")).lower()}
    return samples, sorted(modes)


def run_floor(bench: Bench, count: int, budget_s: float) -> Samples:
    """Samples under the bare IDLE-and-answer floor."""
    user = bench.fresh_user("latency-floor")
    args = ("idle", "--imap-port", str(bench.dovecot.port), "--smtp-port", str(bench.sink.port), "--user", user)
    with Appender(bench, user, "latf") as appender, bench.floor("latency-floor", *args) as process:
        read_json_line(process, READY_TIMEOUT_S)
        time.sleep(SETTLE_S)
        return measure(appender, bench.sink, count, budget_s, SAMPLE_GRACE_S)


def run(bench: Bench) -> list[Result]:
    """Median and p99 APPEND-to-ack, mailwatch against the floor."""
    quick = bench.options.quick
    count, budget_s = (QUICK_SAMPLES, QUICK_BUDGET_S) if quick else (SAMPLES, BUDGET_S)
    mailwatch, watch_modes = run_mailwatch(bench, count, budget_s)
    floor = run_floor(bench, count, budget_s)
    (median, p99), (floor_median, floor_p99) = mailwatch.figures(), floor.figures()
    details = {
        "samples": len(mailwatch.seconds), "requested": count, "floor_samples": len(floor.seconds),
        "budget_s": budget_s, "budget_exhausted": mailwatch.budget_exhausted, "lost_sample": mailwatch.lost,
        "floor_lost_sample": floor.lost, "lost_sample_trace": mailwatch.lost_trace,
        "poll_interval": bench.options.poll_interval, "watch_modes_logged": watch_modes,
        "max_s": max(mailwatch.seconds, default=None),
    }
    label = f" (n={len(mailwatch.seconds)}/{count})" if len(mailwatch.seconds) < count else ""
    lost = {"timed_out": mailwatch.lost, "floor_timed_out": floor.lost}
    return [
        Result(NAME, f"APPEND→ack median{label}", "s", median, floor_median,
               Target.above_floor(floor_median, MEDIAN_MARGIN_S), details, **lost),
        Result(NAME, f"APPEND→ack p99{label}", "s", p99, floor_p99, P99_TARGET, **lost),
    ]
