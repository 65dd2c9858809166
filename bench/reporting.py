"""Scenario `report`: `mailwatch report` over a year of 1,000,000 messages in 100,000 threads on SQLite.

Threads start evenly over the year before REFERENCE_NOW, each with ten messages
(customer and staff in turn); 90% got a first answer within 1-40 hours, a few
hundred are still open. Subjects are drawn from recurring questions in three
languages and from one-offs, so the question grouping has real work. The
SQLite file is generated once and cached like the sweep's. Timed: the whole
report (every query plus the question grouping) over the full year and over the
last 30 days, in process, and the HTML page rendered from the year's report.
Target: < 5 s for the year on SQLite.
"""

import random
import statistics
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.harness import Bench, Stopwatch
from bench.report import Result, Target
from bench.sweep import load_sqlite_tables
from mailwatch.db.engine import Database
from mailwatch.reports import Period, ReportScope, build_report
from mailwatch.reports.html import render_html

NAME = "report"
REFERENCE_NOW = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)  # fixed, so a cached file stays valid
TZ = ZoneInfo("Europe/Berlin")
YEAR = timedelta(days=365)
MESSAGES_PER_THREAD = 10
RUNS = 3  # timed runs per period; the median is reported
GENERATOR_VERSION = 2  # bump when the generated rows change, to invalidate cached files
TARGET = Target(5, inclusive=False)
QUESTIONS = ("Where is my order?", "Refund request", "Can't log in", "Change delivery address", "Invoice copy",
             "Wo ist meine Bestellung?", "Rückerstattung", "Passwort vergessen", "Où est ma commande ?",
             "Remboursement", "Mot de passe oublié", "Facture")
THREAD_COLUMNS = ("id", "mailbox", "subject", "customer_address", "customer_name", "status", "first_received_at",
                  "last_customer_at", "clock", "clock_started_at", "deadline_at", "answered_at", "answered_via",
                  "answered_by", "first_answered_at", "first_answered_via", "first_answered_by", "escalation_level",
                  "message_count", "created_at")
MESSAGE_COLUMNS = ("mailbox", "folder", "uidvalidity", "uid", "message_id", "received_at", "first_seen_at",
                   "subject", "snippet", "category", "ack_outcome", "thread_id", "message_id_synthesised",
                   "from_address", "from_name", "from_all", "reply_to", "to_addrs", "cc_addrs", "size", "references",
                   "flags", "category_reason")


def thread_rows(threads: int, seed: int = 16) -> Iterator[tuple]:
    """Threads spread evenly over the year; one in ten never answered."""
    rng = random.Random(seed)
    for n in range(threads):
        started = REFERENCE_NOW - YEAR + YEAR * (n / threads) + timedelta(seconds=rng.randint(0, 600))
        subject = QUESTIONS[n % len(QUESTIONS)] if rng.random() < 0.6 else f"Question {n} about item {rng.random()}"
        answered = started + timedelta(hours=1 + 39 * rng.random()) if n % 10 else None
        who = f"agent{n % 7}@acme.example" if answered else None
        yield (1001 + n, "support", subject, f"customer{n % 50_000}@example.com", "", "answered" if answered else
               "open", started, started, 1, started, None if answered else started + timedelta(hours=24), answered,
               "staff" if answered else None, who, answered, "staff" if answered else None, who, 0,
               MESSAGES_PER_THREAD, started)


def message_rows(threads: int) -> Iterator[tuple]:
    """Ten messages a thread, a customer's and a staff member's in turn, an hour apart."""
    for row in thread_rows(threads):
        thread_id, subject, started = row[0], row[2], row[6]
        for k in range(MESSAGES_PER_THREAD):
            at = started + timedelta(hours=k)
            customer = k % 2 == 0
            yield ("support", "INBOX", 1, thread_id * MESSAGES_PER_THREAD + k, f"<{thread_id}.{k}@example.com>",
                   at, at, subject, "Hello, I have a question about my order." if k == 0 else "",
                   "customer" if customer else "staff", ("send" if k == 0 else "not-first") if customer else None,
                   thread_id, False, row[3] if customer else "agent@acme.example", "", "", "", "support@acme.example",
                   "", 4000, "", "", "bench")


def load_sqlite(path: Path, threads: int) -> None:
    load_sqlite_tables(path, (("threads", THREAD_COLUMNS, thread_rows(threads)),
                              ("messages", MESSAGE_COLUMNS, message_rows(threads))), analyze=True)


def cached_sqlite(bench: Bench, threads: int) -> tuple[Path, float | None]:
    """The generated database (made now if not cached); generation seconds if it was made now."""
    probe = Database("sqlite://")
    head = probe.head_revision()
    probe.dispose()
    path = bench.options.cache_dir / f"report-{head}-{threads}-v{GENERATOR_VERSION}.db"
    if path.exists():
        return path, None
    path.parent.mkdir(parents=True, exist_ok=True)
    watch = Stopwatch()
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    load_sqlite(partial, threads)
    partial.rename(path)
    return path, round(watch.elapsed_s, 1)


def time_report(db: Database, days: int) -> tuple[float, dict]:
    """Median seconds of RUNS whole reports over the last `days`, and the last report."""
    scope = ReportScope(Period(REFERENCE_NOW - timedelta(days=days), REFERENCE_NOW, TZ), 24 * 3600, "support")
    seconds, report = [], {}
    for _ in range(RUNS):
        watch = Stopwatch()
        with db.session() as session:
            report = build_report(session, scope, REFERENCE_NOW)
        seconds.append(watch.elapsed_s)
    return statistics.median(seconds), report


def run(bench: Bench) -> list[Result]:
    threads = 10_000 if bench.options.quick else 100_000
    path, generated_s = cached_sqlite(bench, threads)
    db = Database(f"sqlite:///{path}")
    year_s, report = time_report(db, 365)
    month_s, _ = time_report(db, 30)
    watch = Stopwatch()
    render_html(report, TZ)
    html_s = watch.elapsed_s
    db.dispose()
    details = {"threads": threads, "messages": threads * MESSAGES_PER_THREAD, "generated_s": generated_s,
               "customer_messages": report["volume"]["customer_messages"], "runs": RUNS}
    return [
        Result(NAME, "year report, sqlite", "s", round(year_s, 3), target=TARGET, details=details),
        Result(NAME, "30-day report, sqlite", "s", round(month_s, 3)),
        Result(NAME, "html page of the year", "s", round(html_s, 3)),
    ]
