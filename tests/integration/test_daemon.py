"""`mailwatch run` as a real process against Dovecot and aiosmtpd: IDLE, faults, signals.

What depends only on the time (alerts, recovery notes, /healthz, sweeps) is tested in
this process on a clock the test moves, in test_daemon_clock.py.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailwatch.config import load_settings
from mailwatch.db.models import Message, OutboxMail, Thread
from mailwatch.imap import FETCH_BATCH_SIZE
from mailwatch.testing.devservers import Dovecot, free_port
from tests.mailfactory import customer_mail

ACK_FAST = 'max_age = "2d"'
# Faults of servers and processes do not depend on the database: SQLite is enough there.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class RunningDaemon:
    """A `mailwatch run` subprocess whose JSON log lines land in a file."""

    def __init__(self, config: Path, log_path: Path, env: dict | None = None) -> None:
        self.log_path = log_path
        self.log_file = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailwatch.cli", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL, stderr=self.log_file, env={**os.environ, **(env or {})},
        )

    def events(self, name: str | None = None) -> list[dict]:
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if name is None or line.get("event") == name]

    def wait_for_event(self, name: str, timeout_s: float = 15) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if found := self.events(name):
                return found[-1]
            assert self.process.poll() is None, f"daemon exited early: {self.log_path.read_text()[-2000:]}"
            time.sleep(0.05)
        raise AssertionError(f"no {name} event within {timeout_s}s")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout_s: float = 15) -> tuple[int, float]:
        """SIGTERM; returns the exit code and how long the exit took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout_s)
        self.log_file.close()
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


@pytest.fixture
def daemon(tmp_path):
    """Start daemons for a test; whatever is still running afterwards is killed."""
    started: list[RunningDaemon] = []

    def start(config: Path, env: dict | None = None) -> RunningDaemon:
        running = RunningDaemon(config, tmp_path / f"daemon-{len(started)}.log", env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.kill()


def wait_until(condition, timeout_s: float = 20, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def count_rows(db, model=Message) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_idle_logs_and_acks_a_new_message_within_two_seconds(dovecot, imap_user, config_file, smtp_sink, daemon):
    # With IDLE, mail is handled at once although the poll interval is a minute.
    path = config_file(ack=True, smtp=smtp_sink, ack_extra=ACK_FAST, mailbox_extra='poll_interval = "60s"')
    running = daemon(path)
    running.wait_for_event("mailbox_watching")
    assert running.events("mailbox_watching")[-1]["mode"] == "idle"
    time.sleep(0.5)
    appended = time.monotonic()
    dovecot.append(imap_user, customer_mail(1))
    assert wait_until(lambda: smtp_sink.received, timeout_s=5)
    assert time.monotonic() - appended < 2.0
    assert running.stop()[0] == 0


@SQLITE_ONLY
def test_server_outages_lose_nothing_and_double_nothing(imap_user, config_file, smtp_sink, daemon, db_for, tmp_path):
    # Dovecot down for 20 s and the SMTP server refusing for a while: afterwards every
    # message is logged once and acknowledged once.
    own = Dovecot.create()
    own.start()
    try:
        path = config_file(ack=True, smtp=smtp_sink, ack_extra=ACK_FAST, mailbox_extra='poll_interval = "1s"',
                           imap_port=own.port)
        db = db_for(load_settings(path))
        running = daemon(path)
        own.append_many(imap_user, [customer_mail(n) for n in range(5)])
        assert wait_until(lambda: len(smtp_sink.received) == 5)
        own.stop()
        smtp_sink.stop()
        time.sleep(20)
        own.start()
        own.append_many(imap_user, [customer_mail(n) for n in range(5, 10)])
        assert wait_until(lambda: count_rows(db) == 10, timeout_s=60)
        time.sleep(2)  # acks queue up and are deferred while the SMTP server is away
        smtp_sink.start()
        assert wait_until(lambda: len(smtp_sink.received) >= 10, timeout_s=30)
        time.sleep(1)
        assert sorted(m.recipients[0] for m in smtp_sink.received) == sorted(
            f"customer{n}@example.com" for n in range(10))
        assert count_rows(db) == 10 and count_rows(db, OutboxMail) == 10
        assert running.events("mailbox_retry") and running.events("mail_deferred")
        assert running.stop()[0] == 0
    finally:
        own.destroy()


def test_sigterm_mid_backlog_exits_fast_and_restart_loses_and_doubles_nothing(
        dovecot, imap_user, config_file, smtp_sink, daemon, db_for):
    # SIGTERM while 800 messages are being logged and acked: exit 0 within 10 s;
    # the restarted daemon finishes the job with every message logged and acked once.
    total = 800
    path = config_file(ack=True, smtp=smtp_sink, ack_extra='max_age = "2d"\nmax_per_hour = 100000')
    db = db_for(load_settings(path))
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(total)])
    first = daemon(path)
    assert wait_until(lambda: count_rows(db) > 0, timeout_s=30)
    code, took_s = first.stop()
    assert code == 0 and took_s < 10
    assert count_rows(db) < total or len(smtp_sink.received) < total, "stopped too late to test anything"
    second = daemon(path)
    assert wait_until(lambda: len(smtp_sink.received) >= total, timeout_s=120)
    time.sleep(1)
    recipients = [m.recipients[0] for m in smtp_sink.received]
    assert len(recipients) == len(set(recipients)) == total
    assert count_rows(db) == total
    assert second.stop()[0] == 0


@SQLITE_ONLY
def test_sighup_reloads_templates_and_keeps_running_on_a_broken_config(
        dovecot, imap_user, config_file, smtp_sink, daemon, tmp_path):
    # A changed template is used by the next ack; a broken config is rejected and logged.
    templates = tmp_path / "templates"
    templates.mkdir()
    path = config_file(ack=True, smtp=smtp_sink, ack_extra=ACK_FAST)
    path.write_text(path.read_text().replace('staff = ["@acme.example"]',
                                             f'staff = ["@acme.example"]\ntemplates = "{templates}"'))
    running = daemon(path)
    running.wait_for_event("daemon_ready")
    dovecot.append(imap_user, customer_mail(1))
    assert wait_until(lambda: len(smtp_sink.received) == 1)
    (templates / "ack.subject.j2").write_text("We have your message [{{ ticket }}]\n")
    running.signal(signal.SIGHUP)
    running.wait_for_event("reloaded")
    dovecot.append(imap_user, customer_mail(2))
    assert wait_until(lambda: len(smtp_sink.received) == 2)
    assert smtp_sink.received[1].message["Subject"] == "We have your message [#1002]"
    good = path.read_text()
    path.write_text(good.replace('[acknowledgment]', '[acknowledgment]\nper_sender_interval = "soon"'))
    running.signal(signal.SIGHUP)
    rejected = running.wait_for_event("reload_rejected")
    assert any("acknowledgment.per_sender_interval" in problem for problem in rejected["problems"])
    dovecot.append(imap_user, customer_mail(3))
    assert wait_until(lambda: len(smtp_sink.received) == 3)
    assert running.process.poll() is None and running.stop()[0] == 0


@SQLITE_ONLY
def test_sd_notify_ready_watchdog_and_stopping(dovecot, imap_user, config_file, daemon, tmp_path):
    # systemd hears READY after the first sync, WATCHDOG from the loop, STOPPING at the end.
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.2)
    running = daemon(config_file(), env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    received: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any("READY=1" in r for r in received):
        try:
            received.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    time.sleep(0.6)  # the watchdog is fed every 0.1 s (half of WATCHDOG_USEC)
    code, _ = running.stop()
    while True:
        try:
            received.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    sock.close()
    fields = [field for message in received for field in message.split("\n")]
    assert code == 0
    assert "READY=1" in fields and "STOPPING=1" in fields
    assert fields.count("WATCHDOG=1") >= 2
    assert any(field.startswith("STATUS=") for field in fields)


@SQLITE_ONLY
def test_second_daemon_on_one_sqlite_database_refuses_to_start(config_file, daemon):
    # Two daemons on one SQLite file would race; the second says why and exits 1.
    path = config_file()
    first = daemon(path)
    first.wait_for_event("daemon_started")
    second = subprocess.run([sys.executable, "-m", "mailwatch.cli", "--config", str(path), "run"],
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert "already using" in second.stderr
    assert first.stop()[0] == 0



def notifications(address: str):
    """A bound NOTIFY_SOCKET and a function returning every field received so far."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    received: list[tuple[float, str]] = []

    def fields() -> list[tuple[float, str]]:
        while True:
            try:
                message = sock.recv(4096).decode()
            except BlockingIOError:
                return received
            received.extend((time.monotonic(), field) for field in message.split("\n"))

    return sock, fields


def with_imap_timeout(path: Path, timeout: str) -> Path:
    path.write_text(path.read_text().replace('  security = "none"\n', f'  security = "none"\n  timeout = "{timeout}"\n'))
    return path


def ready_status(fields) -> tuple[float, str] | None:
    """When READY=1 arrived and the STATUS sent with it."""
    got = fields()
    for index, (at, field) in enumerate(got):
        if field == "READY=1":
            return at, next(text for _at, text in got[index:] if text.startswith("STATUS="))
    return None


@SQLITE_ONLY
def test_staff_reply_filed_in_sent_is_seen_within_seconds(dovecot, imap_user, config_file, daemon, db_for):
    # The Sent folder is watched with IDLE too: an answer there stops the clock long before poll_interval.
    dovecot.append(imap_user, customer_mail(1))
    dovecot.append(imap_user, customer_mail(99, sender="earlier"), folder="Sent")  # the folder exists
    path = config_file(mailbox_extra='sent_folder = "Sent"\npoll_interval = "60s"')
    running = daemon(path)
    running.wait_for_event("daemon_ready")
    assert wait_until(lambda: len([e for e in running.events("mailbox_watching") if e["mode"] == "idle"]) == 2,
                      timeout_s=10)
    time.sleep(0.5)
    reply = (f"From: Acme Support <support@acme.example>\r\nTo: customer1@example.com\r\n"
             f"Subject: Re: Question number 1\r\nMessage-ID: <answer1@acme.example>\r\n"
             f"In-Reply-To: <q1.customer@example.com>\r\n\r\nWe are on it.\r\n").encode()
    dovecot.append(imap_user, reply, folder="Sent")
    db = db_for(load_settings(path))

    def answered() -> bool:
        with db.session() as session:
            return session.scalar(select(Thread.answered_via).where(Thread.id == 1001)) == "sent-folder"

    assert wait_until(answered, timeout_s=5)
    assert running.stop()[0] == 0


@SQLITE_ONLY
def test_ready_waits_for_a_mailbox_that_comes_up_during_start(imap_user, config_file, daemon, tmp_path):
    # Down at the first attempt, up a moment later: READY follows its first sync, all mailboxes OK.
    own = Dovecot.create()
    sock, fields = notifications(str(tmp_path / "notify.sock"))
    try:
        path = with_imap_timeout(config_file(imap_port=own.port), "20s")
        running = daemon(path, env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
        running.wait_for_event("mailbox_retry")
        own.start()
        assert wait_until(lambda: ready_status(fields), timeout_s=20)
        _at, status = ready_status(fields)
        assert status.endswith("all mailboxes OK") and running.events("folder_synced")
        assert running.wait_for_event("daemon_ready")["without"] == []
        assert running.stop()[0] == 0
    finally:
        sock.close()
        own.destroy()


@SQLITE_ONLY
def test_ready_names_a_mailbox_still_down_after_its_timeout(config_file, daemon, tmp_path):
    # A mailbox down for good holds READY back for its imap.timeout, then STATUS names it.
    sock, fields = notifications(str(tmp_path / "notify.sock"))
    try:
        path = with_imap_timeout(config_file(imap_port=free_port()), "3s")
        started = time.monotonic()
        running = daemon(path, env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
        assert wait_until(lambda: ready_status(fields), timeout_s=20)
        at, status = ready_status(fields)
        assert at - started >= 3.0
        assert "FAILING: mailbox support" in status
        assert running.wait_for_event("daemon_ready")["without"] == ["support"]
        assert running.stop()[0] == 0
    finally:
        sock.close()


@SQLITE_ONLY
def test_a_customer_writing_during_a_backlog_is_acked_before_the_backlog_is_logged(
        dovecot, imap_user, config_file, smtp_sink, daemon, db_for):
    # Three days old, the backlog gets no acks; the newcomer's goes out between its batches.
    backlog = 4 * FETCH_BATCH_SIZE
    dovecot.append_many(imap_user, [customer_mail(n, "old") for n in range(backlog)],
                        msg_time=datetime.now() - timedelta(days=3))
    path = config_file(ack=True, smtp=smtp_sink)
    db = db_for(load_settings(path))
    running = daemon(path)
    assert wait_until(lambda: count_rows(db) > 0, timeout_s=30)
    dovecot.append(imap_user, customer_mail(0, "newcomer"))
    assert wait_until(lambda: smtp_sink.to("newcomer0@example.com"), timeout_s=30)
    still_logging = count_rows(db)
    assert still_logging < backlog, "the backlog was logged before the newcomer's ack: nothing tested"
    assert not [e for e in running.events("folder_synced") if e.get("folder") == "INBOX" and e.get("logged")]
    assert wait_until(lambda: count_rows(db) == backlog + 1, timeout_s=60)
    assert len(smtp_sink.received) == 1
    assert running.stop()[0] == 0
