"""Hostile mail against a real Dovecot: bounded header fetch, batches sized by bytes (issue 11)."""

import asyncio

from sqlalchemy import select

from mailwatch.clock import system_clock
from mailwatch.db.models import Message
from mailwatch.imap import HEADER_MAX_BYTES, ImapConnection, ImapEndpoint, plan_batches
from mailwatch.service import Service
from tests.mailfactory import customer_mail

# 40,000 fields, 680 KB of header: an attack, or a broken mail loop's Received chain.
HUGE_HEADER = b"From: flood@example.org\r\nSubject: flood\r\n" + b"X-Pad: aaaaaaaa\r\n" * 40_000 + b"\r\nbody\r\n"


def test_a_huge_header_is_fetched_cut_and_recorded_so(dovecot, imap_user, settings, db):
    # A 680 KB header costs at most HEADER_MAX_BYTES; the row says it was cut; the next mail is logged.
    dovecot.append_many(imap_user, [HUGE_HEADER, customer_mail(1)])
    asyncio.run(Service(settings, db, system_clock).run_once())
    with db.session() as session:
        flood, customer = session.scalars(select(Message).order_by(Message.uid)).all()
    assert flood.header_truncated and flood.from_address == "flood@example.org"
    assert not customer.header_truncated and customer.category == "customer"


def test_fetch_new_returns_the_header_prefix_only(dovecot, imap_user):
    # The IMAP layer asks for BODY.PEEK[HEADER]<0.N>: the server sends no more than N bytes.
    dovecot.append(imap_user, HUGE_HEADER)
    endpoint = ImapEndpoint("127.0.0.1", dovecot.port, "none", imap_user)
    connection = ImapConnection(endpoint, dovecot.password)
    connection.open()
    try:
        connection.select("INBOX")
        (fetched,) = [m for batch in connection.fetch_new(0) for m in batch]
    finally:
        connection.close()
    assert len(fetched.header) == HEADER_MAX_BYTES and fetched.header_cut
    assert fetched.size > len(HUGE_HEADER) - 10


def test_batches_are_cut_by_bytes_as_well_as_by_count():
    # Forty 5 MB mails are not one batch; a thousand small ones are cut by count.
    big = {uid: 5_000_000 for uid in range(1, 41)}
    by_bytes = plan_batches(list(big), big, batch_size=250, batch_bytes=1_000_000)
    assert [uid for batch in by_bytes for uid in batch] == list(big)
    assert max(len(batch) for batch in by_bytes) <= 1_000_000 // HEADER_MAX_BYTES + 1 and len(by_bytes) > 1
    small = {uid: 2_000 for uid in range(1, 1001)}
    assert [len(b) for b in plan_batches(list(small), small, batch_size=250, batch_bytes=4_000_000)] == [250] * 4


def test_one_mail_bigger_than_the_byte_budget_is_still_fetched():
    # A batch never comes out empty, whatever one message weighs.
    assert plan_batches([7], {7: 10**9}, batch_size=250, batch_bytes=10) == [[7]]
