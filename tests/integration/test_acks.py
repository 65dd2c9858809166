"""Acknowledgments end to end: Dovecot in, aiosmtpd out, the corpus judged as the manifest says."""

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from mailwatch.clock import system_clock
from mailwatch.config import load_settings
from mailwatch.db.models import Message, OutboxMail
from mailwatch.service import Service
from tests.mailfactory import customer_mail

# The ack_outcome a message that gets no ack must carry, by manifest category.
NO_ACK_OUTCOME = {"customer-reply": "thread-already-acknowledged"}
# Issue 10: a Reply-To in another domain gets the ack only for an authenticated From (09 has none).
ACK_TO_CHANGED = {"09-reply-to-differs.eml": "marta.k@kowalski-family.example"}


def poll(service: Service):
    return asyncio.run(service.run_once())


@pytest.fixture
def ack_settings(config_file, smtp_sink):
    def make(ack_extra: str = "", **kwargs):
        return load_settings(config_file(ack=True, smtp=smtp_sink, ack_extra=ack_extra, **kwargs))

    return make


def outbox_rows(db) -> list[OutboxMail]:
    with db.session() as session:
        return list(session.scalars(select(OutboxMail).order_by(OutboxMail.id)))


def test_corpus_acks_exactly_the_people_the_manifest_names(corpus, dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # should_ack files get one ack each, to the right address; everything else gets none.
    manifest = json.loads((corpus / "manifest.json").read_text())
    settings = ack_settings()
    db = db_for(settings)
    uids = {e["file"]: dovecot.append(imap_user, (corpus / e["file"]).read_bytes()) for e in manifest}
    report = poll(Service(settings, db, system_clock))
    expected = [e for e in manifest if e["should_ack"]]
    assert report.outbox.sent == len(expected)
    received = smtp_sink.wait_for(len(expected))
    wanted = sorted(ACK_TO_CHANGED.get(e["file"], e["ack_to"]) for e in expected)
    assert sorted(r for mail in received for r in mail.recipients) == wanted
    with db.session() as session:
        rows = {row.uid: row for row in session.scalars(select(Message))}
    for entry in manifest:
        row = rows[uids[entry["file"]]]
        if entry["should_ack"]:
            assert row.ack_outcome == "send", (entry["file"], row.ack_reason)
        else:
            assert row.ack_outcome == NO_ACK_OUTCOME.get(entry["category"], "not-customer"), entry["file"]
    assert not smtp_sink.to("victim@example.net")
    assert not smtp_sink.to("lee.chen@example.com") and not smtp_sink.to("dana.chen@example.net")


def test_ack_headers_thread_and_never_invite_a_loop(corpus, dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # The ack replies into the customer's thread and tells every machine not to answer it.
    settings = ack_settings()
    db = db_for(settings)
    dovecot.append(imap_user, (corpus / "09-reply-to-differs.eml").read_bytes())
    poll(Service(settings, db, system_clock))
    (mail,) = smtp_sink.wait_for(1)
    message = mail.message
    (row,) = outbox_rows(db)
    assert mail.envelope_from == ""  # MAIL FROM:<>, RFC 3834
    assert mail.recipients == ("marta.k@kowalski-family.example",)  # unauthenticated: not the other domain's Reply-To
    assert message["To"].addresses[0].addr_spec == "marta.k@kowalski-family.example"
    assert message["In-Reply-To"] == "<8d41b7e2c9f0a5d3e6b1c4f7a2d9e8b0@kowalski-family.example>"
    assert "<8d41b7e2c9f0a5d3e6b1c4f7a2d9e8b0@kowalski-family.example>" in message["References"]
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["Precedence"] == "bulk"
    assert message["X-Mailwatch-Loop"] == "support@acme.example"
    assert message["Message-ID"] == row.message_id and row.message_id.startswith("<mailwatch.")
    assert f"[#{row.thread_id}]" in message["Subject"]
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    assert 0 < text.index("+1 800 555 0100") < text.index("answer by")  # near the top


def test_header_injection_and_huge_subject_stay_single_safe_lines(corpus, dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # CR/LF in a decoded subject cannot add a header; a 5,000-char subject cannot break a line limit.
    settings = ack_settings()
    db = db_for(settings)
    for name in ("35-subject-crlf-injection.eml", "34-long-header-line.eml", "07-raw-utf8-headers.eml"):
        dovecot.append(imap_user, (corpus / name).read_bytes())
    poll(Service(settings, db, system_clock))
    received = smtp_sink.wait_for(3)
    assert len(received) == 3
    for mail in received:
        assert "Bcc" not in mail.message and len(mail.message.get_all("Subject")) == 1
        assert max(len(line) for line in mail.content.split(b"\r\n")) <= 998
    (polish,) = smtp_sink.to("lukasz.zolkiewski@example.org")
    assert "Zamówienie nr 7781" in polish.message["Subject"]
    assert polish.message["To"].addresses[0].display_name == "Łukasz Żółkiewski"


def test_follow_up_in_same_thread_gets_no_second_ack(corpus, dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # One ack per thread: the customer's reply (even from another address) gets none.
    settings = ack_settings()
    db = db_for(settings)
    dovecot.append(imap_user, (corpus / "23-thread-first.eml").read_bytes())
    poll(Service(settings, db, system_clock))
    dovecot.append(imap_user, (corpus / "24-thread-customer-reply.eml").read_bytes())
    poll(Service(settings, db, system_clock))
    assert [m.recipients for m in smtp_sink.wait_for(1)] == [("fatima.haddad@example.net",)]
    assert len(outbox_rows(db)) == 1


def test_old_mail_on_first_start_is_not_acknowledged(dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # A first start on a full inbox acks nobody whose mail is older than max_age.
    settings = ack_settings('max_age = "1h"')
    db = db_for(settings)
    dovecot.append(imap_user, customer_mail(1), msg_time=datetime.now(UTC) - timedelta(hours=2))
    dovecot.append(imap_user, customer_mail(2))
    poll(Service(settings, db, system_clock))
    assert [m.recipients for m in smtp_sink.wait_for(1)] == [("customer2@example.com",)]
    with db.session() as session:
        outcomes = dict(session.execute(select(Message.uid, Message.ack_outcome)).all())
    assert outcomes == {1: "too-old", 2: "send"}


def test_one_ack_per_sender_per_interval_across_threads(dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # Two new conversations from one address within the interval: only the first is acked.
    settings = ack_settings('per_sender_interval = "24h"')
    db = db_for(settings)
    dovecot.append_many(imap_user, [customer_mail(1, sender="same"), customer_mail(1, sender="same").replace(b"q1.same", b"q9.same")])
    poll(Service(settings, db, system_clock))
    assert len(smtp_sink.wait_for(1)) == 1
    with db.session() as session:
        assert session.scalars(select(Message.ack_outcome).order_by(Message.uid)).all() == ["send", "sender-rate-limited"]


def test_global_cap_holds_acks_and_says_so_once(dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # Past max_per_hour, acks wait (held, not dropped) and one error-level event gives the count.
    settings = ack_settings("max_per_hour = 3\nmax_share_per_domain = 1.0")
    db = db_for(settings)
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(5)])
    with capture_logs() as logs:
        poll(Service(settings, db, system_clock))
    assert len(smtp_sink.wait_for(3)) == 3
    (event,) = [e for e in logs if e["event"] == "ack_global_cap_reached"]
    assert event["log_level"] == "error" and event["acks_in_last_hour"] == 3 and event["held"] == 2
    assert [row.status for row in outbox_rows(db)] == ["sent"] * 3 + ["held"] * 2


def test_temporary_smtp_failure_is_retried_and_delivered_once(dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # 421 and 451 answers defer the ack; it arrives exactly once after the server recovers.
    settings = ack_settings()
    db = db_for(settings)
    smtp_sink.handler.scripted[:] = ["421 4.3.2 Service shutting down", "451 4.3.0 Try again later"]
    dovecot.append(imap_user, customer_mail(1))
    service = Service(settings, db, system_clock)
    assert poll(service).outbox.deferred == 1
    for _ in range(50):
        if smtp_sink.received:
            break
        asyncio.run(service.drain_outbox())
        asyncio.run(asyncio.sleep(0.1))
    assert len(smtp_sink.wait_for(1)) == 1
    asyncio.run(service.drain_outbox())
    (row,) = outbox_rows(db)
    assert (row.status, row.attempts, len(smtp_sink.received)) == ("sent", 2, 1)


def test_permanent_rejection_is_recorded_and_never_retried(dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # A 550 for the recipient is final: the server's answer is kept, nothing is resent.
    settings = ack_settings()
    db = db_for(settings)
    smtp_sink.handler.rejected.add("customer1@example.com")
    dovecot.append(imap_user, customer_mail(1))
    service = Service(settings, db, system_clock)
    assert poll(service).outbox.failed == 1
    asyncio.run(asyncio.sleep(1.2))
    assert asyncio.run(service.drain_outbox()).sent == 0
    (row,) = outbox_rows(db)
    assert row.status == "failed" and row.attempts == 1 and "550" in row.last_error


def test_ack_queued_while_smtp_is_down_is_sent_once_by_a_later_process(dovecot, imap_user, config_file, db_for, smtp_sink):
    # The outbox outlives the process: queued with the server down, delivered by the next run, once.
    settings = load_settings(config_file(ack=True, smtp=smtp_sink))
    db = db_for(settings)
    smtp_sink.stop()
    dovecot.append(imap_user, customer_mail(1))
    assert poll(Service(settings, db, system_clock)).outbox.deferred == 1
    smtp_sink.start()
    asyncio.run(asyncio.sleep(1.1))  # past the retry delay
    assert poll(Service(settings, db, system_clock)).outbox.sent == 1
    assert poll(Service(settings, db, system_clock)).outbox.sent == 0
    assert len(smtp_sink.wait_for(1)) == 1


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_two_instances_on_one_database_ack_each_thread_once(dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # Two services racing over the same mailbox and PostgreSQL database still log once and ack once.
    settings = ack_settings()
    first, second = Service(settings, db_for(settings), system_clock), Service(settings, db_for(settings), system_clock)
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(40)])

    async def race():
        await asyncio.gather(first.run_once(), second.run_once())
        await asyncio.gather(first.drain_outbox(), second.drain_outbox())

    asyncio.run(race())
    smtp_sink.wait_for(40)
    time.sleep(1)  # let any duplicate arrive before counting
    recipients = [mail.recipients[0] for mail in smtp_sink.received]
    assert len(recipients) == len(set(recipients)) == 40
    assert len(outbox_rows(first.db)) == 40
    with first.db.session() as session:
        assert len(session.scalars(select(Message.id)).all()) == 40


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_poll_killed_between_queueing_and_sending_sends_once_after_restart(
        dovecot, imap_user, config_file, smtp_sink, db_for):
    # Killed while the SMTP server is still answering MAIL FROM: the next run sends the ack, once.
    # (SQLite: the next process holds the database lock, so it may release the dead one's lease.)
    path = config_file(ack=True, smtp=smtp_sink)
    db = db_for(load_settings(path))
    smtp_sink.handler.mail_delay_s = 30
    dovecot.append(imap_user, customer_mail(1))
    process = subprocess.Popen([sys.executable, "-m", "mailwatch.cli", "--config", str(path), "poll"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not any(row.claimed_until for row in outbox_rows(db)) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    smtp_sink.handler.mail_delay_s = 0
    assert smtp_sink.received == [] and outbox_rows(db)[0].status == "pending"
    again = subprocess.run([sys.executable, "-m", "mailwatch.cli", "--config", str(path), "poll"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert len(smtp_sink.wait_for(1)) == 1
    (row,) = outbox_rows(db)
    assert row.status == "sent"


def test_lease_of_a_crashed_sender_expires_and_the_mail_goes_out_once(dovecot, imap_user, ack_settings, db_for, smtp_sink):
    # On PostgreSQL nobody may steal a live lease; once it expires, the mail is sent once.
    settings = ack_settings()
    db = db_for(settings)
    now = [datetime.now(UTC)]
    service = Service(settings, db, clock=lambda: now[0])
    dovecot.append(imap_user, customer_mail(1))
    for mailbox in settings.mailboxes:
        service.sync_mailbox(mailbox)
    assert len(service.outbox.claim(10)) == 1  # a sender claims it, then "crashes"
    assert asyncio.run(service.drain_outbox()).sent == 0  # the live lease is respected
    now[0] += service.outbox.policy.lease + timedelta(seconds=1)
    assert asyncio.run(service.drain_outbox()).sent == 1
    assert len(smtp_sink.wait_for(1)) == 1
