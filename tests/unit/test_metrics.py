"""metrics.py: which counters each report moves, and the gauges read from the database at scrape time."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from mailwatch.db.engine import Database
from mailwatch.db.models import OutboxMail, Thread
from mailwatch.daemon.metrics import Metrics
from mailwatch.pipeline.outbox import DrainReport
from mailwatch.pipeline.sync import FolderReport

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=5)


@pytest.fixture
def metrics(db) -> Metrics:
    return Metrics(db, clock=lambda: NOW)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_folder_report_counts_logged_messages_and_suppressed_acks(metrics):
    # Messages by mailbox and category; acks not sent by reason ("send" is no suppression).
    report = FolderReport("support", "INBOX", categories=Counter({"customer": 3, "bounce": 1}),
                          ack_outcomes=Counter({"send": 2, "too-old": 1}))
    metrics.observe_folder(report, synced_at=NOW)
    metrics.observe_folder(report, synced_at=None)
    assert value(metrics, "mailwatch_messages_logged_total", mailbox="support", category="customer") == 6
    assert value(metrics, "mailwatch_messages_logged_total", mailbox="support", category="bounce") == 2
    assert value(metrics, "mailwatch_acks_suppressed_total", reason="too-old") == 2
    assert value(metrics, "mailwatch_acks_suppressed_total", reason="send") is None
    # A report without a sync time (a failed pass) leaves the last good one.
    assert value(metrics, "mailwatch_last_sync_timestamp_seconds", mailbox="support") == NOW.timestamp()


def test_a_drain_report_counts_sent_failed_and_smtp_errors(metrics):
    # Sent and failed by kind; every deferred or failed attempt is an SMTP error.
    report = DrainReport(sent=3, deferred=2, failed=1, sent_by_kind=Counter({"ack": 2, "escalation": 1}),
                         failed_by_kind=Counter({"alert": 1}))
    metrics.observe_drain(report)
    assert value(metrics, "mailwatch_emails_sent_total", kind="ack") == 2
    assert value(metrics, "mailwatch_emails_sent_total", kind="escalation") == 1
    assert value(metrics, "mailwatch_emails_failed_total", kind="alert") == 1
    assert value(metrics, "mailwatch_smtp_errors_total") == 3


def test_a_clean_drain_adds_no_smtp_errors(metrics):
    # Only trouble counts as an error.
    metrics.observe_drain(DrainReport(sent=1, sent_by_kind=Counter({"ack": 1})))
    assert value(metrics, "mailwatch_smtp_errors_total") == 0


def test_escalations_are_counted_per_step(metrics):
    # One count per step reached, labelled with the step number.
    metrics.observe_escalations([1, 1, 2])
    assert value(metrics, "mailwatch_escalations_total", step="1") == 2
    assert value(metrics, "mailwatch_escalations_total", step="2") == 1


def plant(db: Database) -> None:
    """Two open threads (oldest clock from T0), one answered older one, two pending mails and a sent one."""
    with db.session() as session:
        for status, started in (("open", T0), ("open", T0 + timedelta(hours=2)), ("answered", T0 - timedelta(days=1))):
            session.add(Thread(mailbox="support", customer_address="pat@example.com", status=status,
                               first_received_at=started, last_customer_at=started, clock_started_at=started,
                               created_at=started))
        for n, (status, created) in enumerate((("pending", T0 + timedelta(hours=1)), ("pending", T0 + timedelta(hours=4)),
                                               ("sent", T0 - timedelta(days=2)))):
            session.add(OutboxMail(kind="ack", dedupe_key=f"ack:{n}", message_id=f"<m{n}@x>", recipient="p@x",
                                   content=b"", status=status, next_attempt_at=created, created_at=created))


def test_database_gauges_count_open_threads_and_pending_mail_at_scrape_time(db, metrics):
    # Gauges: pending outbox depth and age of the oldest, open threads and the oldest waiting clock.
    plant(db)
    assert value(metrics, "mailwatch_outbox_depth") == 2
    assert value(metrics, "mailwatch_outbox_oldest_age_seconds") == timedelta(hours=4).total_seconds()
    assert value(metrics, "mailwatch_open_threads") == 2
    assert value(metrics, "mailwatch_oldest_unanswered_age_seconds") == timedelta(hours=5).total_seconds()
    assert b"mailwatch_open_threads 2.0" in metrics.render()


def test_database_gauges_are_zero_for_an_empty_database(metrics):
    # Nothing waiting: every gauge reads 0, none is missing.
    for name in ("mailwatch_outbox_depth", "mailwatch_outbox_oldest_age_seconds", "mailwatch_open_threads",
                 "mailwatch_oldest_unanswered_age_seconds"):
        assert value(metrics, name) == 0, name
