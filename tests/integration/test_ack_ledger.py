"""The batch's AckLedger: kept current as acks are queued, it says what a fresh read of the outbox says."""

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from mailwatch.db.engine import Database
from mailwatch.db.models import OutboxKind, OutboxStatus
from mailwatch.pipeline.acks import AckLedger
from mailwatch.pipeline.outbox import enqueue

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
INTERVAL = timedelta(hours=24)
MAX_PER_DOMAIN = 2


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    database.ensure_schema()
    yield database
    database.dispose()


def queue(session, n: int, key: str, domain: str | None, now: datetime, held: bool = False) -> bool:
    message = EmailMessage()
    message["Subject"], message["Message-ID"] = "We got your mail", f"<mailwatch.{n}@acme.example>"
    message.set_content("Thanks.")
    return enqueue(session, kind=OutboxKind.ACK, dedupe_key=f"ack:{n}", message=message, recipient=key,
                   envelope_from="", now=now, status=OutboxStatus.HELD if held else OutboxStatus.PENDING,
                   source_domain=domain, recipient_key=key)


# (recipient key, source domain, held): repeats of one sender and one domain, an authenticated (None) domain.
QUEUED = [("a@x.example", "x.example", False), ("b@x.example", "x.example", False), ("a@x.example", "x.example", True),
          ("c@y.example", None, False), ("d@x.example", "x.example", True), ("e@z.example", "z.example", False)]


def test_ledger_kept_current_matches_a_fresh_read_after_every_queued_ack(db):
    keys = {key for key, _domain, _held in QUEUED}
    with db.session() as session:
        queue(session, 0, "a@x.example", "x.example", T0 - timedelta(minutes=30))  # before the batch
        queue(session, 99, "old@x.example", "x.example", T0 - timedelta(hours=2))  # outside the hour
        ledger = AckLedger(T0, INTERVAL, MAX_PER_DOMAIN, set(keys))
        ledger.facts(session, "a@x.example", "x.example")  # read once, as a batch's first decision does
        for n, (key, domain, held) in enumerate(QUEUED, start=1):
            assert queue(session, n, key, domain, T0, held)
            ledger.queued(key, domain, held=held)
            for probe_key in keys:
                for probe_domain in ("x.example", "y.example", "z.example", None):
                    fresh = AckLedger(T0, INTERVAL, MAX_PER_DOMAIN, set(keys))
                    assert ledger.facts(session, probe_key, probe_domain) == fresh.facts(session, probe_key, probe_domain)
        final = ledger.facts(session, "d@x.example", "x.example")
    assert final.acks_in_last_hour == 5 and final.acks_to_domain_in_last_hour == 3 and final.held_for_domain == 2
    assert final.last_ack_to_sender_at == T0


def test_a_repeated_dedupe_key_queues_nothing(db):
    # The ledger counts only what enqueue says it inserted.
    with db.session() as session:
        assert queue(session, 1, "a@x.example", "x.example", T0)
        assert not queue(session, 1, "a@x.example", "x.example", T0)
