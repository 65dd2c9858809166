"""pipeline/alerts.py: what alert mails say, who gets them, and that each incident mails each recipient once."""

import textwrap
from datetime import UTC, datetime, timedelta
from email import message_from_bytes

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from mailwatch.config import Settings, load_settings
from mailwatch.db.engine import Database
from mailwatch.db.models import OutboxMail
from mailwatch.pipeline.alerts import Incident, Notice, NoticeKind, log_notice, notice_context, queue_notice
from mailwatch.policies import build_policies
from mailwatch.templates import Templates

T0 = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)  # winter: Berlin is UTC+1
MAILBOX = """
    [[mailbox]]
    name = "support"
    address = "support@acme.example"
      [mailbox.imap]
      host = "imap.acme.example"
      password_env = "IMAP_PASSWORD"
"""
SMTP = """
    [smtp]
    host = "smtp.acme.example"
    from = "Acme Support <support@acme.example>"
"""
SERVICE = """
    [service]
    name = "Acme Support"
    phone = "+49 30 1234"
    timezone = "Europe/Berlin"
"""
ESCALATIONS = """
    [[escalation]]
    after = "20h"
    to = ["leads@acme.example"]

    [[escalation]]
    after = "24h"
    to = ["Manager@Acme.example", "cto@acme.example"]
"""


@pytest.fixture
def settings_from(tmp_path):
    """A factory: Settings from TOML snippets."""

    def load(*parts: str) -> Settings:
        path = tmp_path / "mailwatch.toml"
        path.write_text("".join(textwrap.dedent(p) for p in parts))
        return load_settings(path, {"IMAP_PASSWORD": "secret"})

    return load


def alert(since: datetime = T0, at: datetime = T0 + timedelta(minutes=15), kind: str = "alert") -> Notice:
    return Notice(NoticeKind(kind), Incident("mailbox support", since, "IMAP login refused"), at)


def queue_for(session, settings: Settings, notice: Notice, now: datetime) -> int:
    policies = build_policies(settings)
    return queue_notice(session, policies.branding, policies.alert_recipients, Templates(), notice, now)


def queued(db: Database) -> list[OutboxMail]:
    with db.session() as session:
        return list(session.scalars(select(OutboxMail).order_by(OutboxMail.id)))


def test_the_context_names_the_component_error_and_times_in_the_service_zone(settings_from):
    # People read local times and a rounded duration; the branding comes from [service].
    settings = settings_from(SERVICE, MAILBOX, SMTP)
    context = notice_context(build_policies(settings).branding, alert(at=T0 + timedelta(minutes=15, seconds=40)))
    assert context == {
        "service": {"name": "Acme Support", "phone": "+49 30 1234"},
        "kind": "alert",
        "component": "mailbox support",
        "since": "Tuesday 20 January 2026, 10:00 CET",
        "duration": "15m",
        "error": "IMAP login refused",
        "now": "Tuesday 20 January 2026, 10:15 CET",
    }


def test_durations_under_a_minute_are_given_in_seconds(settings_from):
    # alert_after can be seconds (tests, demos): "42s", not "under a minute".
    settings = settings_from(SERVICE, MAILBOX, SMTP)
    assert notice_context(build_policies(settings).branding, alert(at=T0 + timedelta(seconds=42)))["duration"] == "42s"
    assert notice_context(build_policies(settings).branding, alert(at=T0 + timedelta(seconds=60)))["duration"] == "1m"


def test_alerts_go_to_alerts_to_when_set(settings_from):
    # service.alerts_to wins over the escalation steps.
    settings = settings_from(SERVICE + 'alerts_to = ["ops@acme.example"]\n', MAILBOX, SMTP, ESCALATIONS)
    assert settings.alert_recipients == ("ops@acme.example",)


def test_alerts_go_to_the_last_escalation_step_without_alerts_to(settings_from, db):
    # The people who hear last about a late answer also hear that mailwatch is failing.
    settings = settings_from(SERVICE, MAILBOX, SMTP, ESCALATIONS)
    with db.session() as session:
        assert queue_for(session, settings, alert(), T0 + timedelta(minutes=15)) == 2
    mails = queued(db)
    assert [(m.kind, m.recipient, m.status) for m in mails] == [
        ("alert", "manager@acme.example", "pending"), ("alert", "cto@acme.example", "pending")]
    message = message_from_bytes(mails[0].content)
    assert (message["To"], message["Auto-Submitted"], message["X-Mailwatch-Loop"]) == (
        "Manager@Acme.example", "auto-generated", "support@acme.example")
    assert "mailbox support" in message["Subject"] and mails[0].envelope_from == "support@acme.example"


def test_an_incident_mails_each_recipient_once_however_often_it_is_queued(settings_from, db):
    # The dedupe key is stable per incident, kind and recipient: a repeat queues nothing.
    settings = settings_from(SERVICE, MAILBOX, SMTP, ESCALATIONS)
    with db.session() as session:
        queue_for(session, settings, alert(), T0 + timedelta(minutes=15))
    with db.session() as session:
        assert queue_for(session, settings, alert(at=T0 + timedelta(minutes=30)), T0 + timedelta(minutes=30)) == 0
    mails = queued(db)
    assert len(mails) == 2
    assert len({m.dedupe_key for m in mails}) == 2


def test_a_recovery_and_a_later_incident_are_mailed_as_well(settings_from, db):
    # Dedupe is per incident: its recovery, and the next incident, are news.
    settings = settings_from(SERVICE + 'alerts_to = ["ops@acme.example"]\n', MAILBOX, SMTP)
    later = T0 + timedelta(hours=3)
    with db.session() as session:
        for notice in (alert(), alert(kind="recovery", at=T0 + timedelta(hours=1)), alert(since=later, at=later)):
            queue_for(session, settings, notice, notice.at)
    assert len(queued(db)) == 3


def test_without_smtp_an_alert_is_only_logged(settings_from, db):
    # No [smtp] (acks off, no escalations): the critical log line is the alert.
    settings = settings_from(SERVICE + 'alerts_to = ["ops@acme.example"]\n', MAILBOX,
                             "[acknowledgment]\nenabled = false\n")
    assert settings.smtp is None
    with db.session() as session, capture_logs() as logs:
        assert queue_for(session, settings, alert(), T0) == 0
        queue_for(session, settings, alert(kind="recovery"), T0)
        assert logs == []  # queueing says nothing: log_notice speaks once, however often queueing is retried
        log_notice(alert(), ("ops@acme.example",))
        log_notice(alert(kind="recovery"), ("ops@acme.example",))
    assert queued(db) == []
    # Good news is worth seeing but pages nobody: a warning, not critical.
    assert [(e["event"], e["log_level"], e["component"]) for e in logs] == [
        ("mailwatch_alert", "critical", "mailbox support"), ("mailwatch_recovered", "warning", "mailbox support")]
