"""The weekly report email: which weeks are due at `now`, and queuing each once through the outbox.

The outbox is the record: a report's dedupe key names the end of its week, so a
restart finds what was queued, two instances cannot both queue a week, and after
downtime every week missed since the last one queued goes out (up to MAX_CATCH_UP).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from email.utils import format_datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailwatch.clock import iso_utc
from mailwatch.db.models import OutboxKind, OutboxMail
from mailwatch.pipeline.outbox import enqueue
from mailwatch.policies import Branding
from mailwatch.reports import Period, ReportScope, build_report, render_text
from mailwatch.reports.html import render_html
from mailwatch.templates import RenderedMail, build_email, our_message_id

log = structlog.get_logger(__name__)

KEY_PREFIX = "report:"  # then the week's end in ISO UTC: fixed width, so keys sort by time
MAX_CATCH_UP = 8  # weeks sent after a long downtime; older ones are history, read them with `mailwatch report`
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Schedule:
    """A weekday and a time of day in a zone: when each week's report is due."""

    weekday: int  # 0 for Monday
    at: time
    tz: tzinfo

    def latest(self, now: datetime) -> datetime:
        """The last scheduled moment at or before `now`, in UTC."""
        local = now.astimezone(self.tz)
        day = local.date() - timedelta(days=(local.weekday() - self.weekday) % 7)
        moment = datetime.combine(day, self.at, self.tz)
        if moment > local:
            moment = datetime.combine(day - WEEK, self.at, self.tz)
        return moment.astimezone(UTC)

    def week_before(self, end: datetime) -> Period:
        """The seven local days that end at `end` (the same wall-clock time a week earlier, across DST)."""
        local_end = end.astimezone(self.tz)
        start = datetime.combine(local_end.date() - WEEK, self.at, self.tz)
        return Period(start.astimezone(UTC), end, self.tz)


def due_weeks(schedule: Schedule, now: datetime, last_queued: datetime | None) -> list[datetime]:
    """Ends of the weeks to report at `now`, oldest first: all since `last_queued`, else only the latest."""
    ends = [schedule.latest(now)]
    while last_queued is not None and len(ends) < MAX_CATCH_UP:
        earlier = schedule.latest(ends[-1] - timedelta(seconds=1))
        if earlier <= last_queued:
            break
        ends.append(earlier)
    return [end for end in reversed(ends) if last_queued is None or end > last_queued]


def last_queued(session: Session) -> datetime | None:
    """The end of the newest week whose report was queued."""
    key = session.scalar(select(func.max(OutboxMail.dedupe_key)).where(
        OutboxMail.kind == OutboxKind.REPORT, OutboxMail.dedupe_key.startswith(KEY_PREFIX)))
    return datetime.fromisoformat(key[len(KEY_PREFIX):].split("|")[0].replace("Z", "+00:00")) if key else None


@dataclass(frozen=True)
class WeeklyReport:
    """Who gets the weekly report, from whom, and the scope of each week."""

    schedule: Schedule
    recipients: tuple[str, ...]
    branding: Branding
    scope: Callable[[Period], ReportScope]


def queue_weekly_report(session: Session, weekly: WeeklyReport, now: datetime) -> list[datetime]:
    """Queue the report of every due week to every recipient; the ends of the weeks queued."""
    weeks = due_weeks(weekly.schedule, now, last_queued(session))
    for end in weeks:
        period = weekly.schedule.week_before(end)
        report = build_report(session, weekly.scope(period), now)
        mail = _rendered(report, weekly.branding, period)
        for recipient in weekly.recipients:
            _queue_one(session, weekly.branding, mail, recipient, end, now)
        log.info("weekly_report_queued", until=iso_utc(end), recipients=len(weekly.recipients))
    return weeks


def _rendered(report: dict, branding: Branding, period: Period) -> RenderedMail:
    since, until = period.since.astimezone(period.tz), period.until.astimezone(period.tz)
    subject = f"{branding.name}: weekly report {since.day} {since:%b} – {until.day} {until:%b %Y}"
    return RenderedMail(subject, render_text(report, period.tz), render_html(report, period.tz))


def _queue_one(session: Session, branding: Branding, mail: RenderedMail, recipient: str, end: datetime,
               now: datetime) -> None:
    message = build_email(mail, sender=branding.sender, to=recipient, date=format_datetime(now),
                          message_id=our_message_id(0, now, branding.sender_domain),
                          extra_headers={"Auto-Submitted": "auto-generated",
                                         "X-Mailwatch-Loop": branding.sender_address})
    enqueue(session, kind=OutboxKind.REPORT, dedupe_key=f"{KEY_PREFIX}{iso_utc(end)}|{recipient.lower()}",
            message=message, recipient=recipient.lower(), envelope_from=branding.sender_address, now=now)
