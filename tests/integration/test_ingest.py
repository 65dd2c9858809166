"""Ingest against a real Dovecot: the corpus, idempotence, UIDVALIDITY, crashes."""

import asyncio
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from mailwatch.clock import system_clock
from mailwatch.config import load_settings
from mailwatch.db.models import FolderState, Message, OutboxMail, Thread
from mailwatch.imap import FetchedMessage, ImapConnection, ImapEndpoint
from mailwatch.pipeline.acks import Acknowledger
from mailwatch.pipeline.sync import folder_state
from mailwatch.service import Service
from mailwatch.templates import Templates
from tests.mailfactory import customer_mail

# Manifest categories that name what a person wrote; the rest are rules.py categories.
PERSON = {"customer", "customer-reply"}


def expected_category(entry: dict) -> str:
    if entry["category"] in PERSON or (entry["category"] == "malformed" and entry["should_ack"]):
        return "customer"
    if entry["category"] == "malformed":
        return "no-sender"
    return entry["category"]


def poll(settings, db) -> int:
    return asyncio.run(Service(settings, db, system_clock).run_once()).logged


def count(db, model=Message, *where) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def by_message_id(db) -> dict[str, Message]:
    with db.session() as session:
        return {row.message_id: row for row in session.scalars(select(Message))}


def test_corpus_is_logged_classified_and_threaded_as_the_manifest_says(corpus, dovecot, imap_user, settings, db):
    # Every corpus message is logged once, in its manifest category, in the manifest's thread.
    manifest = json.loads((corpus / "manifest.json").read_text())
    uids = {}
    for entry in manifest:
        uids[entry["file"]] = dovecot.append(imap_user, (corpus / entry["file"]).read_bytes())
    assert poll(settings, db) == len(manifest)
    with db.session() as session:
        rows = {row.uid: row for row in session.scalars(select(Message))}
    for entry in manifest:
        row = rows[uids[entry["file"]]]
        assert row.category == expected_category(entry), (entry["file"], row.category_reason)
        if entry["message_id"]:
            assert row.message_id == entry["message_id"], entry["file"]
        else:
            assert row.message_id_synthesised, entry["file"]
        assert row.parse_error is None, entry["file"]
        if entry["threads_to"]:
            parent = rows[uids[entry["threads_to"]]]
            assert row.thread_id is not None and row.thread_id == parent.thread_id, entry["file"]
        elif expected_category(entry) == "customer":
            assert row.thread_id is not None, entry["file"]  # a new ticket
        else:
            assert row.thread_id is None, entry["file"]  # machines open no tickets
    opened = [e for e in manifest if expected_category(e) == "customer" and not e["threads_to"]]
    assert count(db, Thread) == len(opened)


def test_corpus_thread_records_customer_staff_answer_and_count(corpus, dovecot, imap_user, config_file, db_for):
    # 23 opens a ticket, 24 (customer) joins it, 26 (staff, dmarc=pass by Acme's MX) answers it.
    settings = load_settings(config_file(service_extra='authserv_ids = ["mx.acme.example"]'))
    db = db_for(settings)
    for name in ("23-thread-first.eml", "24-thread-customer-reply.eml", "26-staff-reply.eml"):
        dovecot.append(imap_user, (corpus / name).read_bytes())
    poll(settings, db)
    with db.session() as session:
        (thread,) = session.scalars(select(Thread)).all()
        assert thread.customer_address == "fatima.haddad@example.net"
        assert thread.message_count == 3
        assert thread.status == "answered" and thread.answered_via == "staff-address"
        assert thread.answered_by == "alice@acme.example" and thread.answered_auth == "dmarc"
        assert thread.deadline_at is None
        assert thread.id >= 1001


def test_received_at_is_the_servers_internaldate_not_the_date_header(dovecot, imap_user, settings, db, corpus):
    # The SLA clock starts when the server received the mail; a Date of 2099 changes nothing.
    arrived = datetime(2026, 3, 29, 0, 30, 5, tzinfo=UTC)
    dovecot.append(imap_user, (corpus / "29-future-date.eml").read_bytes(), msg_time=arrived)
    poll(settings, db)
    with db.session() as session:
        row = session.scalars(select(Message)).one()
        thread = session.get(Thread, row.thread_id)
    assert row.received_at == arrived
    assert row.date_at.year == 2099
    assert thread.first_received_at == arrived
    assert thread.deadline_at == arrived + timedelta(hours=24)


def test_polling_twice_logs_nothing_twice(dovecot, imap_user, settings, db):
    # A second poll finds nothing new; a later message is picked up alone.
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(30)])
    assert poll(settings, db) == 30
    assert poll(settings, db) == 0
    dovecot.append(imap_user, customer_mail(99))
    assert poll(settings, db) == 1
    assert count(db) == 31
    assert count(db, Thread) == 31


def test_polling_never_marks_mail_as_seen(dovecot, imap_user, settings, db):
    # A poll opens folders read-only: staff still see the customer's mail as unread.
    dovecot.append(imap_user, customer_mail(1))
    poll(settings, db)
    with dovecot.client(imap_user) as client:
        client.select_folder("INBOX")
        flags = client.get_flags(client.search("ALL"))
    assert all(b"\\Seen" not in f for f in flags.values())


def test_fetching_leaves_mail_unseen_even_in_a_read_write_folder(dovecot, imap_user):
    # mailwatch's FETCH peeks: the read-only SELECT is a second guard, not the only one.
    dovecot.append_many(imap_user, [customer_mail(1), customer_mail(2)])
    connection = ImapConnection(ImapEndpoint("127.0.0.1", dovecot.port, "none", imap_user, timeout_s=10),
                                dovecot.password)
    connection.open()
    try:
        connection.client.select_folder("INBOX", readonly=False)  # where a plain BODY[] sets \\Seen
        fetched = connection.fetch(connection.client.search("ALL"))
        assert len(fetched) == 2 and all(m.header for m in fetched)
        flags = connection.flags([m.uid for m in fetched])
    finally:
        connection.close()
    assert flags and all("\\Seen" not in f for f in flags.values())


def test_uidvalidity_change_resyncs_without_duplicates(dovecot, imap_user, config_file, db_for):
    # The folder is recreated with the same mail under new UIDs: nothing is logged twice.
    settings = load_settings(config_file(folder="Support"))
    db = db_for(settings)
    arrived = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    raws = [customer_mail(n) for n in range(5)]
    for raw in raws:
        dovecot.append(imap_user, raw, folder="Support", msg_time=arrived)
    assert poll(settings, db) == 5
    with dovecot.client(imap_user) as client:
        old = client.select_folder("Support")[b"UIDVALIDITY"]
        client.close_folder()
        client.delete_folder("Support")
    for raw in [*raws, customer_mail(6)]:
        dovecot.append(imap_user, raw, folder="Support", msg_time=arrived)
    with dovecot.client(imap_user) as client:
        assert client.select_folder("Support")[b"UIDVALIDITY"] != old
    assert poll(settings, db) == 1
    assert count(db) == 6
    with db.session() as session:
        state = session.scalars(select(FolderState)).one()
        assert state.uidvalidity != old and state.last_uid == 6


def test_killed_poll_resumes_without_losing_or_doubling(dovecot, imap_user, config_file, db_for):
    # A poll killed mid-backlog leaves committed batches; the next poll logs exactly the rest.
    total = 1500
    path = config_file()
    settings = load_settings(path)
    db = db_for(settings)
    dovecot.append_many(imap_user, [customer_mail(n, body_size=2000) for n in range(total)])
    process = subprocess.Popen([sys.executable, "-m", "mailwatch.cli", "--config", str(path), "poll"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while count(db) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = count(db)
    assert 0 < partial < total, "the kill did not land mid-backlog"
    assert poll(settings, db) == total - partial
    assert count(db) == total
    with db.session() as session:
        assert session.scalar(select(func.count(func.distinct(Message.uid)))) == total


def test_a_message_that_cannot_be_stored_is_quarantined_and_the_rest_go_on(settings, db, corpus):
    # One message whose recording fails is kept with its error; its neighbours are logged normally.
    service = Service(settings, db, system_clock)
    ctx = replace(service.folder_context(settings.mailboxes[0], "INBOX"), uidvalidity=7)
    with db.session() as session:
        folder_state(session, "support", "INBOX").uidvalidity = 7  # as a SELECT would have set it
    good = (corpus / "01-plain-ascii.eml").read_bytes()
    header, body = good.split(b"\r\n\r\n", 1)
    now = datetime.now(UTC)
    batch = [
        FetchedMessage(1, now, (), len(good), header, body),
        FetchedMessage(2, now.replace(tzinfo=None), (), 10, b"Subject: x\r\n", b""),  # a naive time cannot be stored
        FetchedMessage(3, now, (), len(good), header.replace(b"5c1f0e7a", b"5c1f0e7b"), body),
    ]
    logged = service.folders.store_batch(ctx, batch)
    assert [entry.uid for entry in logged] == [1, 2, 3]
    with db.session() as session:
        rows = {row.uid: row for row in session.scalars(select(Message))}
        assert rows[2].parse_error and "naive" in rows[2].parse_error
        assert rows[1].thread_id is not None and rows[3].thread_id is not None
        assert session.scalars(select(FolderState.last_uid)).one() == 3


class UnbuildableAcks(Templates):
    """Stands in for any content that makes building the ack fail (fuzz seed 21 found one)."""

    def render_mail(self, kind, context):
        raise UnicodeEncodeError("ascii", "\udcf0", 0, 1, "a lone surrogate")


def test_a_mail_whose_ack_cannot_be_built_is_still_logged_and_threaded(config_file, db_for, corpus, smtp_sink):
    # The customer's mail keeps its category and thread (so it still escalates); only the ack is given up.
    settings = load_settings(config_file(ack=True, smtp=smtp_sink))
    db = db_for(settings)
    service = Service(settings, db, system_clock)
    ctx = service.folder_context(settings.mailboxes[0], "INBOX")
    acks = ctx.acknowledger
    ctx = replace(ctx, uidvalidity=7, acknowledger=Acknowledger(acks.policy, acks.branding, UnbuildableAcks(),
                                                                acks.ticket_tag))
    with db.session() as session:
        folder_state(session, "support", "INBOX").uidvalidity = 7
    good = (corpus / "01-plain-ascii.eml").read_bytes()
    header, body = good.split(b"\r\n\r\n", 1)
    service.folders.store_batch(ctx, [FetchedMessage(1, datetime.now(UTC), (), len(good), header, body)])
    with db.session() as session:
        row = session.scalars(select(Message)).one()
        assert (row.category, row.parse_error, row.ack_outcome) == ("customer", None, "unsendable")
        assert row.thread_id is not None and session.get(Thread, row.thread_id).deadline_at is not None
    assert count(db, OutboxMail) == 0


def test_nastiest_corpus_files_never_block_the_ones_after_them(dovecot, imap_user, settings, db, corpus):
    # Even the nastiest corpus files leave the messages behind them logged.
    nasty = ["36-nul-bytes.eml", "34-long-header-line.eml", "32-broken-base64.eml", "31-unknown-charset.eml"]
    for name in nasty:
        dovecot.append(imap_user, (corpus / name).read_bytes())
    dovecot.append(imap_user, customer_mail(1))
    assert poll(settings, db) == len(nasty) + 1
    with db.session() as session:
        snippets = session.scalars(select(Message.snippet)).all()
    assert not any("\x00" in s for s in snippets)
