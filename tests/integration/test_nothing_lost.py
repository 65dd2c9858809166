"""No message is ever lost, and the log never claims a row that was not committed (issue 11)."""

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select
from structlog.testing import capture_logs

from mailwatch.clock import system_clock
from mailwatch.config import load_settings
from mailwatch.db.models import Message
from mailwatch.service import Service

# All three begin with a blank line, so everything below it is body: no header at all.
HEADERLESS = [
    b"\r\nFrom: ann@example.org\r\nSubject: first\r\n\r\nHello, my order is late.\r\n",
    b"\r\nFrom: bob@example.org\r\nSubject: second\r\n\r\nHello, my parcel is broken.\r\n",
    b"\r\nFrom: ann@example.org\r\nSubject: first\r\n\r\nHello, my order is late.\r\n",  # a byte-identical copy
]
SAME_ID = b"From: cy@example.org\r\nMessage-ID: <same@example.org>\r\nSubject: twice\r\n\r\nHi\r\n"


def poll(settings, db):
    return asyncio.run(Service(settings, db, system_clock).run_once())


def rows(db) -> list[Message]:
    with db.session() as session:
        return list(session.scalars(select(Message).order_by(Message.uid)))


def logged_events(logs: list[dict]) -> list[dict]:
    return [event for event in logs if event["event"] == "message_logged"]


def test_headerless_mails_in_the_same_second_are_all_logged(dovecot, imap_user, settings, db):
    # Three mails without headers, arriving in one second, are three rows with three IDs.
    moment = datetime.now(UTC).replace(microsecond=0)
    uids = dovecot.append_many(imap_user, HEADERLESS, msg_time=moment)
    with capture_logs() as logs:
        poll(settings, db)
    stored = rows(db)
    assert [row.uid for row in stored] == uids
    assert len({row.message_id for row in stored}) == 3 and all(row.message_id_synthesised for row in stored)
    assert sorted(e["uid"] for e in logged_events(logs)) == uids


def test_message_logged_is_said_only_of_committed_rows(dovecot, imap_user, settings, db):
    # A second copy of one Message-ID at the same INTERNALDATE is no new row, and the log says so.
    moment = datetime.now(UTC).replace(microsecond=0)
    uids = dovecot.append_many(imap_user, [SAME_ID, SAME_ID], msg_time=moment)
    with capture_logs() as logs:
        poll(settings, db)
    stored = rows(db)
    assert [e["uid"] for e in logged_events(logs)] == [row.uid for row in stored] == uids[:1]
    assert [e["uid"] for e in logs if e["event"] == "message_already_logged"] == uids[1:]


def test_a_resync_recognises_headerless_mail_by_its_content(dovecot, imap_user, config_file, db_for):
    # After a UIDVALIDITY change the same headerless mails are met again and not logged twice.
    settings = load_settings(config_file(folder="Support"))
    db = db_for(settings)
    moment = datetime.now(UTC).replace(microsecond=0)
    dovecot.append_many(imap_user, HEADERLESS[:2], folder="Support", msg_time=moment)
    poll(settings, db)
    with dovecot.client(imap_user) as client:  # a rebuilt folder: new UIDVALIDITY, same mail
        client.delete_folder("Support")
    dovecot.append_many(imap_user, [b"\r\n" + b"x" * 40, *HEADERLESS[:2]], folder="Support", msg_time=moment)
    poll(settings, db)
    assert len(rows(db)) == 3  # the two again are recognised; only the new one is a new row
