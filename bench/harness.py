"""What every scenario shares: the servers, configs, subprocesses and measuring tools.

`Bench` owns one temporary folder with a throwaway Dovecot, an SMTP sink and the
databases; scenarios ask it for a loaded mailbox, a config file or a running
`mailwatch` and get back `Result`s. mailwatch always runs as the real CLI in a
subprocess, as an operator runs it, so its start-up is part of every figure; the
floors run as subprocesses too, so both sides pay the same interpreter start.
"""

import json
import logging
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import profiles
from bench.corpus import CorpusSpec, generate, load
from mailwatch.logs import configure_logging
from mailwatch.testing.devservers import Dovecot, SmtpSink, local_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_URL_ENV = "MAILWATCH_BENCH_POSTGRES_URL"  # "" disables the PostgreSQL runs
POLL_INTERVAL_ENV = "MAILWATCH_BENCH_POLL_INTERVAL"  # the daemon's poll_interval in `latency`
DEFAULT_POLL_INTERVAL = "60s"  # what an operator sets; IDLE, once in, makes it irrelevant
WAIT_STEP_S = 0.02  # how often conditions are polled while waiting
RSS_SAMPLE_S = 0.05  # how often /proc/PID/status is read while a process runs
THROUGHPUT_ROUNDS = 3  # mailwatch/floor pairs of `ingest` and `acks` (see `median_round`)
T = TypeVar("T")

LOGGING_SECTION = """
[logging]
format = "json"
level = "info"
"""
MAILBOX_SECTION = """
[[mailbox]]
name = "{name}"
address = "{name}@acme.example"
folder = "INBOX"
poll_interval = "{poll_interval}"
  [mailbox.imap]
  host = "127.0.0.1"
  port = {port}
  security = "none"
  username = "{user}"
  password_file = "{password_file}"
"""
ESCALATION_SECTION = """
[sla]
first_response = "24h"

[[escalation]]
after = "20h"
to = ["leads@acme.example"]

[[escalation]]
after = "24h"
to = ["manager@acme.example"]
"""


@dataclass(frozen=True)
class Options:
    """How big and which way to run."""

    quick: bool = False
    poll_interval: str = DEFAULT_POLL_INTERVAL
    memory_large: bool = True  # `memory` also on 50,000 messages (never with quick)
    postgres_url: str | None = DEFAULT_POSTGRES_URL
    cache_dir: Path = Path("/tmp/mailwatch-bench-cache")
    profile_dir: Path | None = None  # py-spy profiles of the mailwatch processes go here


class Stopwatch:
    """Elapsed wall time since creation, in seconds."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


class ChildCpu:
    """CPU seconds (user + system) of the child processes reaped inside a `with` block.

    Less sensitive than wall time to other work on a shared machine: used to compare
    mailwatch with its floor when the machine is busy.
    """

    def __enter__(self) -> "ChildCpu":
        self.seconds = 0.0
        self._before = resource.getrusage(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc: object) -> None:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.seconds = (after.ru_utime - self._before.ru_utime) + (after.ru_stime - self._before.ru_stime)


def wait_until(condition: Callable[[], bool], timeout_s: float, step_s: float = WAIT_STEP_S) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)
    return True


def percentile(values: list[float], share: float) -> float:
    """The `share` quantile (0..1) by linear interpolation; the value itself for one sample."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(share * 1000) - 1]


def rounds(options: "Options") -> int:
    """How many mailwatch/floor pairs a throughput scenario runs, one after the other."""
    return 1 if options.quick else THROUGHPUT_ROUNDS


def median_round(pairs: Sequence[T], ratio: Callable[[T], float]) -> T:
    """The pair whose mailwatch/floor ratio is the median.

    The two sides of a pair run back to back, so the machine's drift (this 2-core VM's
    speed changed by a third within minutes) mostly cancels within a pair; the median
    pair keeps one round on a slow or fast moment from deciding the table.
    """
    return sorted(pairs, key=ratio)[len(pairs) // 2]


def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A `VmRSS`/`VmHWM`-style field of /proc/PID/status in KiB, None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class RssSampler:
    """Samples a process's VmRSS and VmHWM in a background thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0  # VmHWM: the kernel's own high-water mark, exact whatever the sampling rate
        self.last_rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set() and self.sample():
            self._stop.wait(RSS_SAMPLE_S)

    def sample(self) -> bool:
        """Read the figures once; False when the process is gone."""
        rss, hwm = proc_status_kb(self.pid, "VmRSS"), proc_status_kb(self.pid, "VmHWM")
        if rss is None or hwm is None:
            return False
        self.last_rss_kb, self.peak_kb = rss, max(self.peak_kb, hwm)
        return True


def sqlite_value(path: Path, query: str) -> int | str:
    """One value from a SQLite database that another process writes (0 if not there yet)."""
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute(query).fetchone()[0] or 0
    except sqlite3.OperationalError:
        return 0  # the schema is not created yet


def subprocess_env() -> dict[str, str]:
    """The environment for mailwatch and the floors: this repo first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("MAILWATCH_CONFIG", None)
    env["MAILWATCH_ALLOW_ROOT"] = "1"  # a throwaway run on loopback servers, often in a root-only container
    return env


def mailwatch_command() -> list[str]:
    """The installed console script, as an operator runs it (else `python -m mailwatch.cli`)."""
    script = Path(sys.executable).parent / "mailwatch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mailwatch.cli"]


class Bench:
    """The servers and folders one run shares; closes everything it started."""

    def __init__(self, root: Path, options: Options) -> None:
        self.root = root
        self.root.chmod(0o755)  # Dovecot's unprivileged user must reach its folder inside
        self.options = options
        self.password_file = root / "imap-password"
        self.password_file.write_text("secret\n")
        self.setup_s: dict[str, float] = {}  # what preparing each shared thing took
        self._dovecot: Dovecot | None = None
        self._sink: SmtpSink | None = None
        self._loaded: dict[str, int] = {}
        self._postgres_databases: list[str] = []
        self._log_stream: TextIO | None = None

    def log_in_process(self) -> None:
        """Log mailwatch code run inside this process as the daemon does: JSON lines, to a file."""
        if self._log_stream is None:
            path = self.log_path("in-process")
            path.parent.mkdir(exist_ok=True)
            self._log_stream = path.open("a")
            configure_logging("json", "info", stream=self._log_stream)

    @property
    def dovecot(self) -> Dovecot:
        """The run's Dovecot, started on first use."""
        if self._dovecot is None:
            watch = Stopwatch()
            server = Dovecot.create(self.root / "dovecot")
            server.start()
            self._dovecot = server
            self.setup_s["dovecot_start"] = round(watch.elapsed_s, 2)
        return self._dovecot

    @property
    def sink(self) -> SmtpSink:
        """The run's SMTP sink, started on first use."""
        if self._sink is None:
            self._sink = SmtpSink()
            self._sink.start()
        return self._sink

    def mailbox(self, user: str, spec: CorpusSpec) -> str:
        """`user`'s INBOX holding the corpus `spec` describes (loaded once per run); the user."""
        if user not in self._loaded:
            watch = Stopwatch()
            self._loaded[user] = load(self.dovecot, user, generate(spec))
            self.setup_s[f"load_{user}"] = round(watch.elapsed_s, 2)
        return user

    def fresh_user(self, prefix: str) -> str:
        """A new, empty IMAP account (Dovecot accepts any name)."""
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def sqlite_url(self, name: str) -> str:
        """A new SQLite database file in the run's folder."""
        path = self.root / "db" / f"{name}.db"
        path.parent.mkdir(exist_ok=True)
        return f"sqlite:///{path}"

    def postgres_url(self, name: str) -> str | None:
        """A new PostgreSQL database, dropped when the run closes; None if unreachable."""
        admin_url = self.options.postgres_url
        if not admin_url:
            return None
        database = f"mailwatch_bench_{name}_{uuid.uuid4().hex[:8]}"
        try:
            self._postgres_admin(f'CREATE DATABASE "{database}"')
        except Exception:  # noqa: BLE001 - no server: the PostgreSQL figures are skipped
            return None
        self._postgres_databases.append(database)
        return make_url(admin_url).set(database=database).render_as_string(hide_password=False)

    def _postgres_admin(self, statement: str) -> None:
        engine = create_engine(make_url(self.options.postgres_url), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        finally:
            engine.dispose()

    def write_config(self, name: str, *, user: str, database: str, ack: bool = False, smtp: bool = False,
                     escalations: bool = False, max_age: str = "1h", max_per_hour: int = 200,
                     poll_interval: str = DEFAULT_POLL_INTERVAL, folder: str = "INBOX",
                     imap_port: int | None = None) -> Path:
        """A mailwatch.toml for this run's servers (`imap_port` for configs that never connect)."""
        body = local_config(
            database=database, imap_port=imap_port or self.dovecot.port, imap_user=user,
            password_file=self.password_file, folder=folder, ack=ack,
            smtp_port=self.sink.port if smtp or ack or escalations else None, retry=("1s", "5s"),
            mailbox_lines=f'poll_interval = "{poll_interval}"',
            ack_lines=f'max_age = "{max_age}"\nmax_per_hour = {max_per_hour}',
            extra=LOGGING_SECTION + (ESCALATION_SECTION if escalations else ""),
        )
        path = self.root / f"{name}.toml"
        path.write_text(body)
        return path

    def mailbox_section(self, name: str, user: str) -> str:
        """A further [[mailbox]] for a config of `write_config`: `user`'s INBOX as mailbox `name`."""
        return MAILBOX_SECTION.format(name=name, poll_interval=self.options.poll_interval, port=self.dovecot.port,
                                      user=user, password_file=self.password_file)

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    @contextmanager
    def process(self, name: str, command: list[str], profile: bool = False,
                env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
        """Run `command` with stderr to the log `name`; stopped with SIGTERM on exit."""
        log_path = self.log_path(name)
        log_path.parent.mkdir(exist_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, cwd=REPO_ROOT,
                                       env={**subprocess_env(), **(env or {})})
            spy = None
            if profile and self.options.profile_dir is not None:
                spy = profiles.attach(process.pid, self.options.profile_dir / f"{name}.speedscope")
            try:
                yield process
            finally:
                stop_process(process)
                profiles.detach(spy)

    def mailwatch(self, name: str, config: Path, *args: str,
                  env: dict[str, str] | None = None) -> AbstractContextManager[subprocess.Popen]:
        """`mailwatch --config CONFIG ARGS…` as a context-managed subprocess (profiled if asked)."""
        return self.process(name, [*mailwatch_command(), "--config", str(config), *args], profile=True, env=env)

    def floor(self, name: str, *args: str) -> AbstractContextManager[subprocess.Popen]:
        """`python -m bench.floors ARGS…` as a context-managed subprocess."""
        return self.process(name, [sys.executable, "-m", "bench.floors", *args])

    def close(self) -> None:
        """Stop the servers and drop the PostgreSQL databases."""
        if self._log_stream is not None:
            logging.getLogger().handlers.clear()
            self._log_stream.close()
        if self._sink is not None:
            self._sink.stop()
        if self._dovecot is not None:
            self._dovecot.stop()
        for database in self._postgres_databases:
            try:
                self._postgres_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001 - report, but finish closing
                print(f"bench: could not drop {database}: {exc}", file=sys.stderr)


def stop_process(process: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it will not go; always reaped."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def finish(process: subprocess.Popen, timeout_s: float) -> str:
    """Wait for a subprocess to exit on its own; its stdout. Raises if it failed."""
    try:
        out, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{process.args!r} did not finish within {timeout_s:.0f} s") from None
    if process.returncode != 0:
        raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
    return out.decode(errors="replace")


def read_json_line(process: subprocess.Popen, timeout_s: float) -> dict:
    """The next stdout line of a subprocess, parsed as JSON (the floors report this way)."""
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not result or not result[0]:
        raise RuntimeError(f"{process.args!r} said nothing within {timeout_s:.0f} s")
    return json.loads(result[0])


def log_events(path: Path) -> list[dict]:
    """The JSON log lines of a mailwatch run (other lines are skipped)."""
    events = []
    with path.open(errors="replace") as log:
        for line in log:
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return events
