"""Alert and recovery emails about mailwatch itself, queued like any other mail."""

from datetime import datetime, timedelta
from email.utils import format_datetime

import structlog
from sqlalchemy.orm import Session

from mailwatch.config import Settings
from mailwatch.db.models import OutboxKind
from mailwatch.durations import rounded
from mailwatch.health import Incident, Notice
from mailwatch.pipeline.outbox import enqueue
from mailwatch.sla import human_time
from mailwatch.templates import Templates, build_email, our_message_id

log = structlog.get_logger(__name__)


def notice_context(settings: Settings, notice: Notice) -> dict:
    """What the alert templates see."""
    incident = notice.incident
    seconds = int((notice.at - incident.since).total_seconds())  # alert_after may be seconds in tests
    return {
        "service": {"name": settings.service.name, "phone": settings.service.phone},
        "kind": notice.kind,
        "component": incident.component,
        "since": human_time(incident.since, settings.service.tz),
        "duration": rounded(notice.at - incident.since) if seconds >= 60 else f"{seconds}s",
        "error": incident.error,
        "now": human_time(notice.at, settings.service.tz),
    }


def queue_notice(session: Session, settings: Settings, templates: Templates, notice: Notice, now: datetime) -> int:
    """Queue the notice to every alert recipient; returns how many were queued."""
    recipients = settings.alert_recipients
    log.critical("mailwatch_alert" if notice.kind == "alert" else "mailwatch_recovered",
                 component=notice.incident.component, since=notice.incident.since.isoformat(),
                 error=notice.incident.error, recipients=list(recipients))
    if settings.smtp is None or not recipients:
        return 0
    smtp = settings.smtp
    rendered = templates.render_mail("alert", notice_context(settings, notice))
    key = f"{notice.kind}:{notice.incident.component}:{notice.incident.since.isoformat()}"
    for recipient in recipients:
        message = build_email(rendered, sender=smtp.from_, to=recipient, date=format_datetime(now),
                              message_id=our_message_id(0, now, smtp.from_domain),
                              extra_headers={"Auto-Submitted": "auto-generated", "X-Mailwatch-Loop": smtp.from_address})
        enqueue(session, kind=OutboxKind.ALERT, dedupe_key=f"{key}:{recipient.lower()}", message=message,
                recipient=recipient.lower(), envelope_from=smtp.from_address, now=now)
    return len(recipients)


def sample_notice(now: datetime) -> Notice:
    """For test-rendering the alert templates at `check` time."""
    return Notice("alert", Incident("mailbox support", now - timedelta(minutes=15), "IMAP login refused"), now)
