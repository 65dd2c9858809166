"""Alert and recovery emails about mailwatch itself, queued like any other mail.

What a notice is lives here, beside how it is emailed; when one is due is decided by
`mailwatch.daemon.health`, the only place that knows about `service.alert_after`.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from enum import StrEnum

import structlog
from sqlalchemy.orm import Session

from mailwatch.db.models import OutboxKind
from mailwatch.durations import rounded
from mailwatch.pipeline.outbox import enqueue
from mailwatch.policies import Branding
from mailwatch.templates import Templates, build_email, our_message_id

log = structlog.get_logger(__name__)


@dataclass
class Incident:
    """One component failing since some time; `alerted` once its alert has gone out."""

    component: str  # "mailbox support", "outbox"
    since: datetime
    error: str
    alerted: bool = False


class NoticeKind(StrEnum):
    """What a notice about mailwatch itself says."""

    ALERT = "alert"  # a component has been failing for alert_after
    RECOVERY = "recovery"  # it works again after an alert went out


@dataclass(frozen=True)
class Notice:
    """An alert or a recovery note to send."""

    kind: NoticeKind
    incident: Incident
    at: datetime


def notice_context(branding: Branding, notice: Notice) -> dict:
    """What the alert templates see."""
    incident = notice.incident
    seconds = int((notice.at - incident.since).total_seconds())  # alert_after may be seconds in tests
    return {
        **branding.context(),
        "kind": notice.kind,
        "component": incident.component,
        "since": branding.local_time(incident.since),
        "duration": rounded(notice.at - incident.since) if seconds >= 60 else f"{seconds}s",
        "error": incident.error,
        "now": branding.local_time(notice.at),
    }


def queue_notice(session: Session, branding: Branding, recipients: tuple[str, ...], templates: Templates,
                 notice: Notice, now: datetime) -> int:
    """Queue the notice to every alert recipient; returns how many were new (not queued before)."""
    log.critical("mailwatch_alert" if notice.kind is NoticeKind.ALERT else "mailwatch_recovered",
                 component=notice.incident.component, since=notice.incident.since.isoformat(),
                 error=notice.incident.error, recipients=list(recipients))
    if not branding.sender or not recipients:
        return 0  # no SMTP configured, or nobody to tell: the log line above is all there is
    rendered = templates.render_mail("alert", notice_context(branding, notice))
    key = f"{notice.kind}:{notice.incident.component}:{notice.incident.since.isoformat()}"
    queued = 0
    for recipient in recipients:
        message = build_email(rendered, sender=branding.sender, to=recipient, date=format_datetime(now),
                              message_id=our_message_id(0, now, branding.sender_domain),
                              extra_headers={"Auto-Submitted": "auto-generated",
                                             "X-Mailwatch-Loop": branding.sender_address})
        queued += enqueue(session, kind=OutboxKind.ALERT, dedupe_key=f"{key}:{recipient.lower()}", message=message,
                          recipient=recipient.lower(), envelope_from=branding.sender_address, now=now)
    return queued


def sample_notice(now: datetime) -> Notice:
    """For test-rendering the alert templates at `check` time."""
    return Notice(NoticeKind.ALERT, Incident("mailbox support", now - timedelta(minutes=15), "IMAP login refused"), now)
