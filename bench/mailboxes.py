"""Scenario `mailboxes`: 200 mailboxes (one Dovecot, 200 users) in one `mailwatch run`.

The daemon is started under a NOTIFY_SOCKET of our own, so "start → READY" is the time
from spawning it to its sd_notify READY=1 (sent once every mailbox has synced). Then
one customer mail is APPENDed to each of `SAMPLES` mailboxes spread over the 200, one
at a time, and timed APPEND → ack as in `latency`; the floor is `latency`'s bare IDLE
client in the same run. Reported beside them: peak RSS, the daemon's threads and its
IMAP connections (counted from /proc), and how many mailboxes it says it watches with
IDLE. Targets (issue 18): READY under 30 s, peak RSS under 300 MB, every mailbox in
IDLE, APPEND→ack p50 and p99 within 0.3 s of the floor's ("unchanged").
"""

import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import Bench, RssSampler, log_events, proc_status_kb
from bench.isolation import FLOOR_BUDGET_S, FLOOR_SAMPLES, during_backlog
from bench.latency import QUICK_SAMPLES, SAMPLE_GRACE_S, Appender, measure, run_floor
from bench.memory import KIB_PER_MB
from bench.report import Result, Target

NAME = "mailboxes"
MAILBOXES = 200
QUICK_MAILBOXES = 20
SAMPLES = 50
READY_TARGET = Target(30.0, inclusive=False)
RSS_TARGET = Target(300.0, inclusive=False)
MARGIN_S = 0.3
READY_TIMEOUT_S = 120.0
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


@contextmanager
def inotify_for(instances: int) -> Iterator[str]:
    """Dovecot's IDLE needs an inotify instance per connection; Linux allows 128 per user by
    default, and past it Dovecot looks for new mail only every 30 s, a limit of the bench's
    server (all 200 users are one Unix user here), not of mailwatch. Raised for the run when
    we may (root), put back after; yields what was done, for the report."""
    before = int(INOTIFY_INSTANCES.read_text())
    if before >= instances:
        yield f"{before} (enough)"
        return
    try:
        INOTIFY_INSTANCES.write_text(str(instances))
    except OSError:
        yield f"{before} (too few: mailboxes past it are told of new mail every 30 s)"
        return
    try:
        yield f"raised from {before} to {instances} for the run"
    finally:
        INOTIFY_INSTANCES.write_text(str(before))


def wait_ready(notify: socket.socket, timeout_s: float) -> bool:
    """Whether READY=1 arrived on the notify socket within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        notify.settimeout(left)
        try:
            if b"READY=1" in notify.recv(4096).split(b"\n"):
                return True
        except TimeoutError:
            return False
    return False


def tcp_peer_ports(pid: int) -> Counter[int]:
    """The remote ports of a process's established TCP connections, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports: Counter[int] = Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
                ports[int(fields[2].rsplit(":", 1)[1], 16)] += 1
    return ports


def write_config(bench: Bench, users: list[str]) -> Path:
    """One config watching every user's INBOX (the first one is the base config's mailbox)."""
    config = bench.write_config(NAME, user=users[0], database=bench.sqlite_url(NAME), ack=True,
                                max_per_hour=10 * len(users), poll_interval=bench.options.poll_interval)
    config.write_text(config.read_text() + "".join(
        bench.mailbox_section(f"m{number}", user) for number, user in enumerate(users[1:], start=1)))
    return config


def sample(bench: Bench, users: list[str], count: int) -> tuple[list[float], bool]:
    """APPEND→ack of one new customer in each of `count` mailboxes spread over `users`."""
    seconds: list[float] = []
    for number in range(count):
        user = users[number * len(users) // count]
        with Appender(bench, user, f"mbx{number}") as appender:
            appender.count = number  # a new customer each time: a second ack to one within a day is held back
            samples = measure(appender, bench.sink, 1, SAMPLE_GRACE_S, SAMPLE_GRACE_S)
        if samples.lost:
            return seconds, True
        seconds.extend(samples.seconds)
    return seconds, False


def idle_mailboxes(bench: Bench) -> int:
    """How many mailboxes the daemon logged as watched with IDLE."""
    return len({event.get("mailbox") for event in log_events(bench.log_path(f"{NAME}-run"))
                if event.get("event") == "mailbox_watching" and event.get("mode") == "idle"})


def run(bench: Bench) -> list[Result]:
    """Start-up, memory, threads, connections and APPEND→ack with many mailboxes in one daemon."""
    total = QUICK_MAILBOXES if bench.options.quick else MAILBOXES
    users = [bench.fresh_user(f"mbx{number}") for number in range(total)]
    for user in users:
        with Appender(bench, user, "mbx"):
            pass  # the account exists before the daemon looks
    config = write_config(bench, users)
    with inotify_for(2 * total + 64) as inotify:
        rows = measure_daemon(bench, users, config)
    rows[0].details["inotify_instances"] = inotify
    return rows


def measure_daemon(bench: Bench, users: list[str], config: Path) -> list[Result]:
    """Run the daemon on every mailbox, then the IDLE floor; the scenario's rows."""
    total = len(users)
    socket_path = bench.root / f"{NAME}-notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(socket_path))
        started = time.monotonic()
        with bench.mailwatch(f"{NAME}-run", config, "run", env={"NOTIFY_SOCKET": str(socket_path)}) as process, \
                RssSampler(process.pid) as rss:
            ready = wait_ready(notify, READY_TIMEOUT_S)
            ready_s = time.monotonic() - started
            if not ready:
                raise RuntimeError(f"mailwatch run sent no READY=1 within {READY_TIMEOUT_S:g} s")
            seconds, lost = sample(bench, users, min(SAMPLES, total))
            threads = proc_status_kb(process.pid, "Threads")
            imap_connections = tcp_peer_ports(process.pid)[bench.dovecot.port]
            watching = idle_mailboxes(bench)
    floor = run_floor(bench, QUICK_SAMPLES if bench.options.quick else FLOOR_SAMPLES, FLOOR_BUDGET_S)
    details = {"mailboxes": total, "threads": threads, "imap_connections": imap_connections,
               "watching_with_idle": watching, "floor_budget_exhausted": floor.budget_exhausted}
    latency = during_backlog(NAME, "APPEND→ack p50", "APPEND→ack p99, same run", seconds, lost, floor, MARGIN_S, {})
    return [
        Result(NAME, f"start → READY, {total} mailboxes", "s", ready_s, target=READY_TARGET, details=details),
        Result(NAME, "mailboxes not watched with IDLE", "", total - watching, target=Target(0)),
        *latency,
        Result(NAME, "peak RSS", "MB", rss.peak_kb / KIB_PER_MB, target=RSS_TARGET),
        Result(NAME, "threads (whole process)", "", threads),
        Result(NAME, "IMAP connections", "", imap_connections),
    ]
