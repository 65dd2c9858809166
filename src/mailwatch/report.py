"""`mailwatch report`: how the team did over a period — volumes, response times, the SLA."""

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailwatch.clock import iso_utc
from mailwatch.db.models import Escalation, Message, OutboxKind, OutboxMail, OutboxStatus, Thread
from mailwatch.sla import ThreadStatus


@dataclass
class Report:
    since: datetime
    until: datetime
    messages: dict[str, int] = field(default_factory=dict)  # by category
    threads_opened: int = 0
    answered: int = 0
    answered_within_sla: int = 0
    first_response_median_s: float | None = None
    first_response_p90_s: float | None = None
    open_now: int = 0
    overdue_now: int = 0
    acks_sent: int = 0
    acks_suppressed: dict[str, int] = field(default_factory=dict)  # by reason
    escalations: dict[str, int] = field(default_factory=dict)  # by step

    def as_json(self) -> dict:
        data = asdict(self)
        data["since"], data["until"] = iso_utc(self.since), iso_utc(self.until)
        return data


def build_report(session: Session, since: datetime, now: datetime, first_response: timedelta) -> Report:
    """Everything received since `since`; the open and overdue counts are as of `now`."""
    report = Report(since=since, until=now)
    report.messages = _grouped(session, Message.category, Message.received_at >= since)
    _first_responses(session, report, since, first_response)
    report.open_now, report.overdue_now = session.execute(
        select(func.count(Thread.id), func.count(Thread.id).filter(Thread.deadline_at < now))
        .where(Thread.status == ThreadStatus.OPEN)
    ).one()
    report.acks_sent = session.scalar(select(func.count(OutboxMail.id)).where(
        OutboxMail.kind == OutboxKind.ACK, OutboxMail.status == OutboxStatus.SENT, OutboxMail.created_at >= since))
    suppressed = _grouped(session, Message.ack_outcome, Message.received_at >= since, Message.ack_outcome.is_not(None))
    report.acks_suppressed = {reason: n for reason, n in suppressed.items() if reason != "send"}
    report.escalations = {f"step {step}": n for step, n in
                          _grouped(session, Escalation.step, Escalation.created_at >= since).items()}
    return report


def _grouped(session: Session, column, *where) -> dict:
    rows = session.execute(select(column, func.count()).where(*where).group_by(column)).all()
    return dict(Counter({key: count for key, count in rows}).most_common())


def _first_responses(session: Session, report: Report, since: datetime, first_response: timedelta) -> None:
    # A reopened thread's answer belongs to a later clock: only first clocks time the first response.
    rows = session.execute(
        select(Thread.first_received_at, Thread.answered_at, Thread.clock).where(Thread.first_received_at >= since)
    ).all()
    report.threads_opened = len(rows)
    waits = [(answered - received).total_seconds() for received, answered, clock in rows
             if answered is not None and clock == 1]
    report.answered = len(waits)
    report.answered_within_sla = sum(1 for wait in waits if wait <= first_response.total_seconds())
    if waits:
        report.first_response_median_s = statistics.median(waits)
        report.first_response_p90_s = statistics.quantiles(waits, n=10)[-1] if len(waits) > 1 else waits[0]
