"""SQLite on a volume that fills up: every write fails softly, and work resumes by itself.

The database lives on a real 3 MB tmpfs (the suite runs as root in CI; elsewhere these
tests skip and say why), filled to the last byte by a filler file.
"""

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailwatch.clock import system_clock
from mailwatch.config import load_settings
from mailwatch.db.engine import Database
from mailwatch.db.models import Message, OutboxMail
from mailwatch.errors import TransientError
from mailwatch.service import Service
from tests.faults import fill, small_volume, with_database
from tests.mailfactory import customer_mail

SQLITE_ON_VOLUME = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def volume(tmp_path) -> Path:
    with small_volume(tmp_path / "volume") as path:
        yield path


@pytest.fixture
def small_disk_settings(config_file, smtp_sink, volume):
    """Settings whose SQLite file sits on the small volume."""
    return load_settings(with_database(config_file(ack=True, smtp=smtp_sink), f"sqlite:///{volume / 'mailwatch.db'}"))


def count(db: Database, model) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


@SQLITE_ON_VOLUME
def test_full_disk_fails_every_write_softly_and_work_resumes_once_space_returns(
        dovecot, imap_user, small_disk_settings, volume, db_for, smtp_sink):
    # While the disk is full, syncing and sending fail as retryable errors (never a crash) and
    # nothing is sent; once space returns, the same process logs and acks everything, once.
    settings = small_disk_settings
    db = db_for(settings)
    service = Service(settings, db, system_clock)
    mailbox = settings.mailboxes[0]
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(2)])
    service.sync_mailbox(mailbox)  # two acks queued, not yet sent
    assert db.checkpoint()
    filler = fill(volume)
    with pytest.raises(TransientError):
        service.sync_mailbox(mailbox)  # nothing new: only the folder's sync time is written
    dovecot.append_many(imap_user, [customer_mail(n) for n in range(2, 5)])
    with pytest.raises(TransientError):
        service.sync_mailbox(mailbox)
    report = asyncio.run(service.drain_outbox())
    assert report.sent == 0 and report.database_error and smtp_sink.received == []
    filler.unlink()
    service.sync_mailbox(mailbox)
    assert asyncio.run(service.drain_outbox()).sent == 5
    recipients = [mail.recipients[0] for mail in smtp_sink.wait_for(5)]
    assert len(recipients) == len(set(recipients)) == 5
    assert count(db, Message) == count(db, OutboxMail) == 5


@SQLITE_ON_VOLUME
def test_checkpoint_gives_the_wal_back_to_the_disk(small_disk_settings, volume, db_for):
    # journal_size_limit and a TRUNCATE checkpoint keep the WAL from holding the disk's space.
    db = db_for(small_disk_settings)
    with db.session() as session:
        session.add_all(OutboxMail(kind="ack", dedupe_key=f"k{n}", message_id=f"<{n}@x>", recipient="a@b.example",
                                   content=b"x" * 4000, next_attempt_at=system_clock(), created_at=system_clock())
                        for n in range(200))
    wal = volume / "mailwatch.db-wal"
    assert wal.stat().st_size > 500_000
    assert db.checkpoint()
    assert wal.stat().st_size == 0
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_size_limit").scalar() == 1048576
