"""`mailwatch run` under faults: a full disk, mail arriving mid-sync, SIGTERM mid-job, a restart."""

import re
import time
from datetime import datetime

import pytest
from sqlalchemy import func, select

from mailwatch.config import load_settings
from mailwatch.db.engine import Database
from mailwatch.db.models import Message
from mailwatch.testing.devservers import free_port
from tests.faults import fill, small_volume, with_database
from tests.integration.test_daemon import ACK_FAST, SQLITE_ONLY, count_rows, daemon, wait_until  # noqa: F401
from tests.integration.test_daemon_clock import http_get as _get
from tests.mailfactory import customer_mail

ALERTS = '[[escalation]]\nafter = "1h"\nto = ["ops@acme.example"]\n'


def at(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


@SQLITE_ONLY
def test_mail_appended_during_a_long_sync_is_logged_within_a_second_of_its_end(
        dovecot, imap_user, config_file, daemon, db_for):
    # Mail that comes during a backlog is taken between its batches (test_newcomers.py); what
    # comes during the last batch is announced by "* N EXISTS" and acted on before IDLE.
    path = config_file(mailbox_extra='poll_interval = "60s"')
    db = db_for(load_settings(path))
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(1500)])
    running = daemon(path)
    assert wait_until(lambda: count_rows(db) > 0, timeout_s=30)
    dovecot.append_many(imap_user, [customer_mail(n, sender="late") for n in range(5)])
    appended = time.time()
    assert wait_until(lambda: count_rows(db) == 1505, timeout_s=20)
    # The late mail can be committed between the last batches, before the sync writes its end.
    assert wait_until(lambda: running.events("folder_synced"), timeout_s=10)
    first_end = running.events("folder_synced")[0]
    assert at(first_end) > appended and first_end["logged"] >= 1500, "the backlog ended before the appends"
    late = [at(e) for e in running.events("message_logged") if "late" in e["message_id"]]
    assert len(late) == 5 and max(late) - at(first_end) < 1.0
    assert running.stop()[0] == 0


@SQLITE_ONLY
def test_sigterm_while_a_job_runs_exits_without_tracebacks(dovecot, imap_user, config_file, daemon, db_for):
    # A Sent-folder sync in flight ends by itself at SIGTERM: no CancelledError, nothing at error level.
    path = config_file(mailbox_extra='sent_folder = "Sent"')
    db = db_for(load_settings(path))
    dovecot.append_many(imap_user, [customer_mail(n, sender="staff") for n in range(1500)], folder="Sent")
    running = daemon(path)

    def sent_rows() -> int:
        with db.session() as session:
            return session.scalar(select(func.count()).select_from(Message).where(Message.folder == "Sent"))

    assert wait_until(lambda: sent_rows() > 0, timeout_s=30)
    code, took_s = running.stop()
    assert code == 0 and took_s < 10
    assert sent_rows() < 1500, "the job ended before SIGTERM: nothing was tested"
    text = running.log_path.read_text()
    assert "CancelledError" not in text
    assert not [e for e in running.events() if e.get("level") in ("error", "critical")]


@SQLITE_ONLY
def test_mail_queued_before_a_restart_goes_out_at_once(dovecot, imap_user, config_file, smtp_sink, daemon, db_for):
    # Acks queued while SMTP was away are sent right after start, not at the first 5-second tick.
    path = config_file(ack=True, smtp=smtp_sink, ack_extra=ACK_FAST)
    db = db_for(load_settings(path))
    smtp_sink.stop()
    dovecot.append(imap_user, customer_mail(1))
    first = daemon(path)
    first.wait_for_event("mail_deferred")
    assert first.stop()[0] == 0
    time.sleep(1.2)  # past the retry delay
    smtp_sink.start()
    second = daemon(path)
    assert wait_until(lambda: smtp_sink.received, timeout_s=15)
    received = time.time()
    assert received - at(second.wait_for_event("daemon_started")) < 1.5
    assert len(smtp_sink.received) == 1
    assert second.stop()[0] == 0


@SQLITE_ONLY
def test_full_disk_alerts_ops_once_space_returns_and_recovers_without_restart(
        dovecot, imap_user, config_file, smtp_sink, daemon, tmp_path):
    # The disk fills under a running daemon: no crash, the alert that could not be queued is
    # shown by /healthz and a gauge, and once space returns the same process logs and acks
    # everything once and sends the alert, then the recovery note.
    port = free_port()
    with small_volume(tmp_path / "volume") as volume:
        path = config_file(ack=True, smtp=smtp_sink, ack_extra=ACK_FAST, mailbox_extra='poll_interval = "1s"',
                           extra=ALERTS + f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        path.write_text(path.read_text().replace('staff = ["@acme.example"]',
                                                 'staff = ["@acme.example"]\nalert_after = "2s"'))
        db = _database(with_database(path, f"sqlite:///{volume / 'mailwatch.db'}"))
        running = daemon(path)
        dovecot.append_many(imap_user, [customer_mail(n) for n in range(2)])
        assert wait_until(lambda: len(smtp_sink.received) == 2)
        with db.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = fill(volume)
        dovecot.append_many(imap_user, [customer_mail(n) for n in range(2, 7)])
        running.wait_for_event("alert_queue_failed", timeout_s=20)
        status, body = _get(port, "/healthz")
        assert status == 503 and "not queued yet" in body
        assert "mailwatch_alerts_unqueued 1.0" in _get(port, "/metrics")[1]
        filler.unlink()
        assert wait_until(lambda: count_rows(db) == 7 and len(_customers(smtp_sink)) == 7, timeout_s=40)
        assert wait_until(lambda: _all_recovered(_notes(smtp_sink)), timeout_s=20)
        notes = _notes(smtp_sink)  # (ALERT|RECOVERED, component), in the order they arrived
        assert ("ALERT", "mailbox support") in notes
        for kind, component in notes:  # each alert is followed by its component's recovery
            assert kind == "RECOVERED" or notes.index(("RECOVERED", component)) > notes.index((kind, component))
        customers = _customers(smtp_sink)
        assert len(customers) == len(set(customers)) == 7
        assert not running.events("mailbox_watch_crashed")
        assert {e["level"] for e in running.events("mailwatch_recovered")} == {"warning"}  # good news pages nobody
        assert running.stop()[0] == 0
        db.dispose()


def _database(path) -> Database:
    db = Database(load_settings(path).service.database)
    db.ensure_schema()
    return db


def _notes(sink) -> list[tuple[str, str]]:
    subjects = [str(mail.message["Subject"]) for mail in sink.to("ops@acme.example")]
    return [re.search(r"(ALERT|RECOVERED): (.+?) (?:failing|works)", subject).groups() for subject in subjects]


def _all_recovered(notes: list[tuple[str, str]]) -> bool:
    alerts = {component for kind, component in notes if kind == "ALERT"}
    return bool(alerts) and alerts == {component for kind, component in notes if kind == "RECOVERED"}


def _customers(sink) -> list[str]:
    return [mail.recipients[0] for mail in sink.received if mail.recipients[0] != "ops@acme.example"]


@SQLITE_ONLY
def test_kill_9_while_sending_repeats_only_announced_mails_with_their_message_id(
        dovecot, imap_user, config_file, smtp_sink, daemon, db_for):
    # Killed five times while 300 messages are logged and acked: every message is logged once,
    # every customer acked; a mail arrives twice only if the restart said it was inside the SMTP
    # window when the process died, and both copies carry the same Message-ID.
    total = 300
    path = config_file(ack=True, smtp=smtp_sink, ack_extra=ACK_FAST + "\nmax_per_hour = 100000")
    db = db_for(load_settings(path))
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(total)])
    smtp_sink.handler.data_delay_s = 0.05  # a real server's pause before its 250: the window a kill can hit
    runs = []
    for kill_at in (20, 60, 100, 140, 180):  # mails received: each kill lands while acks go out
        runs.append(daemon(path))
        assert wait_until(lambda: len(smtp_sink.received) >= kill_at, timeout_s=60)  # noqa: B023 - used at once
        runs[-1].kill()
    runs.append(daemon(path))
    assert wait_until(lambda: len({m.recipients[0] for m in smtp_sink.received}) == total, timeout_s=90)
    time.sleep(1)
    assert count_rows(db) == total
    copies: dict[str, set[str]] = {}
    for mail in smtp_sink.received:
        copies.setdefault(mail.recipients[0], set()).add(mail.message["Message-ID"])
    assert all(len(ids) == 1 for ids in copies.values())  # a repeat is the same mail
    announced = {e["message_id"] for run in runs for e in run.events("mail_resent_after_interrupted_send")}
    repeated = {mail.message["Message-ID"] for mail in smtp_sink.received} - _once(smtp_sink)
    assert repeated <= announced, (len(repeated), len(announced))
    assert runs[-1].stop()[0] == 0


def _once(sink) -> set[str]:
    ids = [mail.message["Message-ID"] for mail in sink.received]
    return {mid for mid in ids if ids.count(mid) == 1}
