"""Scenario `sweep`: one escalation sweep over 1,000,000 threads, 100,000 of them open.

The schema comes from `Database.ensure_schema()`; thread rows (and one customer
message per open thread, which the digest quotes) are bulk-inserted with plain SQL:
executemany on SQLite, COPY on PostgreSQL. Open threads started their clocks over the
last 30 hours and have had the steps that fell due; a few hundred have just crossed
the first step. `Service(settings, db, clock=…).sweep()` is timed in three phases: a
few warm-up sweeps an hour earlier (nothing due), the first sweep that escalates the
due ones, then the steady state with nothing new due (median reported). The SQLite
file is generated once and cached (keyed by schema revision and sizes) in
`Options.cache_dir`; PostgreSQL is loaded per run and ANALYZEd as autovacuum would.
Floors: the same work in bare SQL through the driver (the due-thread query alone for
the steady state; query, step rows, thread updates and one outbox row for the
escalating sweep, rolled back so mailwatch then finds the same due threads).
Target: < 50 ms on SQLite for the steady-state sweep.
"""

import random
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from bench.harness import Bench, Stopwatch
from bench.report import Result, Target
from mailwatch.config import load_settings
from mailwatch.db.engine import Database
from mailwatch.service import Service

NAME = "sweep"
REFERENCE_NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the sweep's clock; fixed so a cached file stays valid
STEPS = (timedelta(hours=20), timedelta(hours=24))  # as in harness.ESCALATION_SECTION
OPEN_SPAN = timedelta(hours=30)  # open threads started their clocks over this span
DUE_WINDOW = timedelta(minutes=10)  # due threads crossed step 1 within this window before now
HISTORY = timedelta(days=365)  # answered and closed threads go back a year
CHUNK_ROWS = 50_000
WARMUP_SWEEPS = 3
STEADY_SWEEPS = 15
FLOOR_RUNS = 15
GENERATOR_VERSION = 1  # bump when the generated rows change, to invalidate cached files
TARGET = Target(50, inclusive=False)
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format for DateTime on SQLite

THREAD_COLUMNS = (
    "id", "mailbox", "subject", "customer_address", "customer_name", "status", "first_received_at",
    "last_customer_at", "clock", "clock_started_at", "deadline_at", "answered_at", "answered_via", "answered_by",
    "escalation_level", "next_escalation_at", "message_count", "created_at",
)
MESSAGE_COLUMNS = (
    "mailbox", "folder", "uidvalidity", "uid", "message_id", "message_id_synthesised", "from_address", "from_name",
    "from_all", "reply_to", "to_addrs", "cc_addrs", "subject", "date_header", "received_at", "first_seen_at", "size",
    "references", "flags", "snippet", "category", "category_reason", "thread_id",
)
DUE_QUERY = (  # what Escalator.sweep asks for, in plain SQL
    "SELECT {columns} FROM threads WHERE status = 'open' AND next_escalation_at <= {mark} "
    "ORDER BY next_escalation_at LIMIT 500{lock}"
)
LATEST_MESSAGE = ("SELECT snippet FROM messages WHERE thread_id = {mark} AND category = 'customer' "
                  "ORDER BY received_at DESC, id DESC LIMIT 1")
CALENDAR_SECTION = """
[[calendar]]
name = "office"
timezone = "Europe/Berlin"
hours = { mon = "00:00-24:00", tue = "00:00-24:00", wed = "00:00-24:00", thu = "00:00-24:00", fri = "00:00-24:00", sat = "00:00-24:00", sun = "00:00-24:00" }
holidays = ["2026-12-24", "2026-12-31"]
public_holidays = { country = "DE", subdivision = "BE" }
"""
# The sweep once more with steps in business time. Open all week (and no holiday near
# REFERENCE_NOW), so the same 300 threads fall due as on the elapsed clock, but every
# due time goes through the calendar arithmetic and its merging across midnight.
DIGEST_BYTES_PER_THREAD = 1_500  # roughly what one thread adds to a digest (text and HTML)


@dataclass(frozen=True)
class Sizes:
    threads: int
    open: int
    due: int

    @property
    def key(self) -> str:
        return f"{self.threads}-{self.open}-{self.due}"


FULL = Sizes(threads=1_000_000, open=100_000, due=300)
QUICK = Sizes(threads=100_000, open=10_000, due=300)


# -- generated rows -----------------------------------------------------------------


def thread_rows(sizes: Sizes, seed: int = 4) -> Iterator[tuple]:
    """Every thread row: the open ones first (the due ones among them), then the rest."""
    rng = random.Random(seed)
    for n in range(sizes.threads):
        thread_id = 1001 + n
        if n < sizes.due:
            yield _open_thread(thread_id, rng, STEPS[0] + DUE_WINDOW * rng.random(), level=0)
        elif n < sizes.open:
            elapsed = OPEN_SPAN * rng.random()
            yield _open_thread(thread_id, rng, elapsed, level=sum(1 for after in STEPS if after <= elapsed))
        else:
            yield _answered_thread(thread_id, rng)


def _open_thread(thread_id: int, rng: random.Random, elapsed: timedelta, level: int) -> tuple:
    started = REFERENCE_NOW - elapsed
    following = started + STEPS[level] if level < len(STEPS) else None
    return (thread_id, "support", f"Order {thread_id} has not arrived", f"customer{thread_id}@example.com",
            f"Customer {thread_id}", "open", started, started, 1, started, started + STEPS[-1], None, None, None,
            level, following, rng.randint(1, 4), started)


def _answered_thread(thread_id: int, rng: random.Random) -> tuple:
    started = REFERENCE_NOW - HISTORY * rng.random() - OPEN_SPAN
    answered = started + timedelta(hours=1 + 29 * rng.random())
    status = "answered" if rng.random() < 0.8 else "closed"
    return (thread_id, "support", f"Question {thread_id}", f"customer{thread_id % 200_000}@example.com",
            f"Customer {thread_id}", status, started, started, 1, started, None, answered, "staff-address",
            "agent@acme.example", 0, None, rng.randint(1, 6), started)


def message_rows(sizes: Sizes) -> Iterator[tuple]:
    """One customer message per open thread, as the digest quotes it."""
    for n in range(sizes.open):
        thread_id = 1001 + n
        address = f"customer{thread_id}@example.com"
        received = REFERENCE_NOW - timedelta(minutes=n % 1800)
        yield ("support", "INBOX", 1, n + 1, f"<q{thread_id}@example.com>", False, address,
               f"Customer {thread_id}", f"Customer {thread_id} <{address}>", "", "support@acme.example", "",
               f"Order {thread_id} has not arrived", None, received, received, 8000, "", "",
               "Hello, my order has not arrived yet. " * 8, "customer", "no rule matched", thread_id)


def chunks(rows: Iterator[tuple], size: int = CHUNK_ROWS) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- loading ------------------------------------------------------------------------


def _sqlite_param(value: object) -> object:
    return value.astimezone(UTC).strftime(DATETIME_FORMAT) if isinstance(value, datetime) else value


def _insert_sql(table: str, columns: tuple[str, ...], placeholder: str) -> str:
    quoted = ", ".join(f'"{column}"' for column in columns)
    return f'INSERT INTO {table} ({quoted}) VALUES ({", ".join([placeholder] * len(columns))})'


def load_sqlite(path: Path, sizes: Sizes) -> None:
    """Create the schema through mailwatch, then executemany the rows in chunks."""
    load_sqlite_tables(path, (("threads", THREAD_COLUMNS, thread_rows(sizes)),
                              ("messages", MESSAGE_COLUMNS, message_rows(sizes))))


def load_sqlite_tables(path: Path, tables: Iterable[tuple[str, tuple[str, ...], Iterator[tuple]]],
                       analyze: bool = False) -> None:
    """The schema through mailwatch, then each (table, columns, rows) executemany'd in chunks."""
    database = Database(f"sqlite:///{path}")
    database.ensure_schema()
    database.dispose()
    connection = sqlite3.connect(path)
    for table, columns, rows in tables:
        statement = _insert_sql(table, columns, "?")
        for chunk in chunks(rows):
            with connection:
                connection.executemany(statement, [tuple(map(_sqlite_param, row)) for row in chunk])
    if analyze:
        connection.execute("ANALYZE")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def load_postgres(url: str, sizes: Sizes) -> None:
    """Create the schema through mailwatch, COPY the rows in, ANALYZE as autovacuum would."""
    database = Database(url)
    database.ensure_schema()
    database.dispose()
    with psycopg.connect(_libpq_url(url)) as connection:
        for table, columns, rows in (("threads", THREAD_COLUMNS, thread_rows(sizes)),
                                     ("messages", MESSAGE_COLUMNS, message_rows(sizes))):
            quoted = ", ".join(f'"{column}"' for column in columns)
            with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        connection.execute(f"SELECT setval('threads_id_seq', {1000 + sizes.threads})")
        connection.commit()
        connection.autocommit = True
        connection.execute("ANALYZE")


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def cached_sqlite(bench: Bench, sizes: Sizes) -> tuple[Path, float | None]:
    """A copy of the generated SQLite database in the run's folder; generation seconds if it was made now."""
    probe = Database("sqlite://")  # in memory: only asked for the migrations' head
    head = probe.head_revision()
    probe.dispose()
    cache = bench.options.cache_dir / f"sweep-{head}-{sizes.key}-v{GENERATOR_VERSION}.db"
    generated_s = None
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        for stale in cache.parent.glob(f"sweep-*-{sizes.key}-v*.db"):
            stale.unlink()  # the same sizes for an older schema or generator: never used again
        partial = cache.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        watch = Stopwatch()
        load_sqlite(partial, sizes)
        partial.replace(cache)
        generated_s = watch.elapsed_s
    copy = bench.root / "db" / "sweep.db"
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(cache, copy)
    return copy, generated_s


# -- timing -------------------------------------------------------------------------


class Clock:
    """The service's clock, moved by the benchmark."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    outcome = call()
    return time.perf_counter() - started, outcome


@dataclass
class SweepFigures:
    first_s: float
    escalated: int
    emails: int
    steady_s: list[float]
    warmup_s: list[float]


def time_mailwatch(bench: Bench, url: str, name: str, calendar: bool = False) -> SweepFigures:
    """Warm-up sweeps, the escalating sweep, then the steady state, through `Service.sweep()`."""
    config = bench.write_config(f"sweep-{name}", user="sweep", database=url, escalations=True, imap_port=143)
    if calendar:
        config.write_text(config.read_text().replace("[sla]\n", '[sla]\ncalendar = "office"\n') + CALENDAR_SECTION)
    bench.log_in_process()
    clock = Clock(REFERENCE_NOW - timedelta(hours=1))
    database = Database(url)
    service = Service(load_settings(config), database, clock=clock)
    service.check_templates()  # compiles the templates, as the daemon's start-up does
    try:
        warmup = [timed(service.sweep)[0] for _ in range(WARMUP_SWEEPS)]
        clock.now = REFERENCE_NOW
        first_s, report = timed(service.sweep)
        steady = [timed(service.sweep) for _ in range(STEADY_SWEEPS)]
    finally:
        database.dispose()
    if any(outcome.escalated for _, outcome in steady):
        raise RuntimeError("a steady-state sweep escalated something: the generated data is wrong")
    return SweepFigures(first_s, len(report.escalated), report.emails, [s for s, _ in steady], warmup)


@dataclass(frozen=True)
class Dialect:
    """How bare SQL differs between the drivers: parameter mark, row lock, datetime values."""

    mark: str
    lock: str
    value: Callable[[object], object]


SQLITE = Dialect("?", "", _sqlite_param)
POSTGRES = Dialect("%s", " FOR UPDATE SKIP LOCKED", lambda value: value)


def floor_sqlite(path: Path) -> tuple[float, float]:
    """Bare sqlite3: the median steady query, and the escalating sweep's statements."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        return _floors(connection, SQLITE)
    finally:
        connection.close()


def floor_postgres(url: str) -> tuple[float, float]:
    """Bare psycopg: the median steady query, and the escalating sweep's statements."""
    with psycopg.connect(_libpq_url(url), autocommit=True) as connection:
        return _floors(connection, POSTGRES)


def _floors(connection, dialect: Dialect) -> tuple[float, float]:
    steady = [_steady_floor(connection, dialect) for _ in range(FLOOR_RUNS)]
    return statistics.median(steady), _escalating_floor(connection, dialect)


def _due(connection, dialect: Dialect, columns: str, now: datetime) -> list[tuple]:
    query = DUE_QUERY.format(columns=columns, mark=dialect.mark, lock=dialect.lock)
    return connection.execute(query, (dialect.value(now),)).fetchall()


def _steady_floor(connection, dialect: Dialect) -> float:
    started = time.perf_counter()
    connection.execute("BEGIN")
    rows = _due(connection, dialect, "*", REFERENCE_NOW - timedelta(hours=1))
    connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    if rows:
        raise RuntimeError("the steady-state floor found due threads")
    return elapsed


def _escalating_floor(connection, dialect: Dialect) -> float:
    """Read the due threads and their quotes, record the steps, queue one digest; rolled back."""
    mark, now = dialect.mark, dialect.value(REFERENCE_NOW)
    started = time.perf_counter()
    connection.execute("BEGIN")
    due = _due(connection, dialect, "id, clock", REFERENCE_NOW)
    for thread_id, _clock in due:
        connection.execute(LATEST_MESSAGE.format(mark=mark), (thread_id,)).fetchone()
    _executemany(connection, f"INSERT INTO escalations (thread_id, clock, step, created_at) "
                             f"VALUES ({mark}, {mark}, 1, {mark})", [(i, c, now) for i, c in due])
    _executemany(connection, f"UPDATE threads SET escalation_level = 1, next_escalation_at = {mark} WHERE id = {mark}",
                 [(dialect.value(REFERENCE_NOW + timedelta(hours=4)), i) for i, _ in due])
    connection.execute(
        "INSERT INTO outbox (kind, dedupe_key, message_id, recipient, envelope_from, subject, content, status, "
        "attempts, next_attempt_at, created_at) VALUES ('escalation', 'floor', '<floor@acme.example>', "
        f"'leads@acme.example', '', 'digest', {mark}, 'pending', 0, {mark}, {mark})",
        (b"x" * DIGEST_BYTES_PER_THREAD * len(due), now, now))
    elapsed = time.perf_counter() - started
    connection.execute("ROLLBACK")  # mailwatch must find the same threads due
    if not due:
        raise RuntimeError("the escalating floor found nothing due")
    return elapsed


def _executemany(connection, statement: str, rows: list[tuple]) -> None:
    if isinstance(connection, sqlite3.Connection):
        connection.executemany(statement, rows)
    else:
        with connection.cursor() as cursor:
            cursor.executemany(statement, rows)


# -- the scenario -------------------------------------------------------------------


def results(backend: str, sizes: Sizes, figures: SweepFigures, floors: tuple[float, float],
            details: dict) -> list[Result]:
    """The steady-state and the escalating sweep as table rows."""
    steady_ms = statistics.median(figures.steady_s) * 1000
    target = TARGET if backend == "sqlite" else None
    details = {**details, "threads": sizes.threads, "open": sizes.open, "due": sizes.due,
               "escalated": figures.escalated, "digest_emails": figures.emails,
               "steady_ms": [round(s * 1000, 2) for s in figures.steady_s],
               "warmup_ms": [round(s * 1000, 2) for s in figures.warmup_s]}
    return [
        Result(NAME, f"{backend}: steady sweep, median of {len(figures.steady_s)}", "ms", steady_ms,
               floors[0] * 1000, target, details),
        Result(NAME, f"{backend}: first sweep, escalates {figures.escalated}", "ms", figures.first_s * 1000,
               floors[1] * 1000),
    ]


def run_sqlite(bench: Bench, sizes: Sizes) -> list[Result]:
    path, generated_s = cached_sqlite(bench, sizes)
    floors = floor_sqlite(path)
    # The escalating sweep writes: the calendar variant gets its own copy, taken before it.
    with_calendar = path.with_name(f"calendar-{path.name}")
    shutil.copyfile(path, with_calendar)
    figures = time_mailwatch(bench, f"sqlite:///{path}", "sqlite")
    details = {"generation_s": round(generated_s, 1) if generated_s else "cached",
               "file_mb": round(path.stat().st_size / 1e6)}
    try:
        calendar = time_mailwatch(bench, f"sqlite:///{with_calendar}", "sqlite-calendar", calendar=True)
    finally:
        with_calendar.unlink()
    return results("sqlite", sizes, figures, floors, details) + results(
        "sqlite+calendar", sizes, calendar, floors, details)


def run_postgres(bench: Bench, sizes: Sizes) -> list[Result]:
    url = bench.postgres_url("sweep")
    if url is None:
        return [Result(NAME, "postgresql: skipped (unreachable or disabled)", "ms", None)]
    watch = Stopwatch()
    load_postgres(url, sizes)
    generated_s = watch.elapsed_s
    floors = floor_postgres(url)
    figures = time_mailwatch(bench, url, "postgresql")
    return results("postgresql", sizes, figures, floors, {"generation_s": round(generated_s, 1)})


def run(bench: Bench) -> list[Result]:
    """The sweep on SQLite, and on PostgreSQL when reachable."""
    sizes = QUICK if bench.options.quick else FULL
    return run_sqlite(bench, sizes) + run_postgres(bench, sizes)
