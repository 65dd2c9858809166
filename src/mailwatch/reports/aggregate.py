"""The report's figures, counted by the database: volumes, first responses, backlog, staffing.

Every query aggregates (GROUP BY, window functions) so that a year of mail costs a
few thousand result rows, not a million. Counts by local day, week and hour come
from 15-minute UTC buckets folded into the service's time zone in Python.
"""

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.orm import Session

from mailwatch.clock import iso_utc
from mailwatch.config.models import FaqEntry
from mailwatch.db.models import Escalation, Message, OutboxKind, OutboxMail, OutboxStatus, Thread
from mailwatch.mail.rules import Category
from mailwatch.reports.period import Period
from mailwatch.reports.questions import top_questions
from mailwatch.reports.sql import BUCKET_S, bucket, dialect_of, seconds_between, value_at_rank
from mailwatch.sla import ThreadStatus

RULE_PER_PERSON = 400  # the tip: one dedicated person once email reaches 400 enquiries a month
STAFFING_MONTHS = 3  # full months averaged for the staffing suggestion
HISTOGRAM_EDGES_S = (3600, 4 * 3600, 8 * 3600, 24 * 3600, 48 * 3600, 72 * 3600, 7 * 86400)  # histogram edges
BACKLOG_AGES_S = (0, 4 * 3600, 24 * 3600, 48 * 3600, 7 * 86400)  # backlog bins: at least this old
TOP_QUESTION_THREADS = 3000  # the newest threads grouped into questions; enough to see what recurs


@dataclass(frozen=True)
class ReportScope:
    """What a report covers and the promises it measures against."""

    period: Period
    sla_s: float
    mailbox: str | None = None
    sent_folders: tuple[tuple[str, str], ...] = ()  # (mailbox, folder): staff replies, not customers
    faq: tuple[FaqEntry, ...] = ()


def build_report(session: Session, scope: ReportScope, now: datetime) -> dict:
    """The whole report as the `--json` object; the backlog is as of `now`."""
    period = scope.period
    messages = _localised(_message_buckets(session, scope, period.since, period.until), period)
    threads = _localised(_thread_buckets(session, scope), period)
    first = _first_response(session, scope)
    return {
        "period": {"since": iso_utc(period.since), "until": iso_utc(period.until), "timezone": str(period.tz)},
        "mailbox": scope.mailbox,
        "sla_s": scope.sla_s,
        "volume": _volume(messages, threads, period),
        "first_response": first,
        "by_week": _by_week(threads, period),
        "by_hour": _by_hour(messages),
        "backlog": _backlog(session, scope, now),
        "responders": _responders(session, scope),
        "staffing": _staffing(session, scope),
        "top_questions": top_questions(_question_rows(session, scope), scope.faq),
        "acks": _acks(session, scope),
        "escalations": _escalations(session, scope),
    }


# -- filters ---------------------------------------------------------------------------


def _customer_messages(scope: ReportScope, since: datetime, until: datetime) -> list:
    where = [Message.received_at >= since, Message.received_at < until, Message.category == Category.CUSTOMER]
    if scope.mailbox:
        where.append(Message.mailbox == scope.mailbox)
    if scope.sent_folders:  # a customer's address in our Sent folder is a reply we filed, not an enquiry
        where.append(not_(or_(*(and_(Message.mailbox == box, Message.folder == folder)
                                for box, folder in scope.sent_folders))))
    return where


def _threads_in(scope: ReportScope) -> list:
    where = [Thread.first_received_at >= scope.period.since, Thread.first_received_at < scope.period.until]
    if scope.mailbox:
        where.append(Thread.mailbox == scope.mailbox)
    return where


def _waits(session: Session, scope: ReportScope):
    """The period's threads with their first wait in seconds (NULL: unanswered), computed once a row.

    MATERIALIZED keeps SQLite from folding the subquery back in and working out the
    wait again for each aggregate that reads it.
    """
    wait = seconds_between(dialect_of(session), Thread.first_received_at, Thread.first_answered_at)
    who = func.coalesce(Thread.first_answered_by, Thread.first_answered_via)
    return (select(Thread.first_received_at.label("started"), wait.label("wait"), who.label("who"))
            .where(*_threads_in(scope)).cte("waits").prefix_with("MATERIALIZED"))


def _decided(scope: ReportScope, waits):
    # Answered, or unanswered past the promise: either way the SLA verdict is known.
    overdue_from = scope.period.until - timedelta(seconds=scope.sla_s)
    return or_(waits.c.wait.is_not(None), waits.c.started < overdue_from)


# -- buckets folded into local time ----------------------------------------------------------


def _message_buckets(session: Session, scope: ReportScope, since: datetime, until: datetime) -> list[tuple]:
    slot = bucket(dialect_of(session), Message.received_at)
    return session.execute(
        select(slot, func.count()).where(*_customer_messages(scope, since, until)).group_by(slot)).all()


def _thread_buckets(session: Session, scope: ReportScope) -> list[tuple]:
    waits = _waits(session, scope)
    slot = bucket(dialect_of(session), waits.c.started)
    return session.execute(
        select(slot, func.count(), func.count(case((waits.c.wait <= scope.sla_s, 1))),
               func.count(case((_decided(scope, waits), 1)))).group_by(slot)).all()


def _local(slot: int, period: Period) -> datetime:
    return datetime.fromtimestamp(slot * BUCKET_S, period.tz)


def _localised(rows: list[tuple], period: Period) -> list[tuple]:
    """Bucket rows with the bucket's start in local time first: converted once, folded many ways."""
    return [(_local(slot, period), *counts) for slot, *counts in rows]


def _by_key(rows: list[tuple], key) -> dict:
    totals: dict = defaultdict(lambda: [0] * (len(rows[0]) - 1))
    for local, *counts in rows:
        into = totals[key(local)]
        for index, count in enumerate(counts):
            into[index] += count
    return totals


def _days(period: Period) -> list[date]:
    first, last = period.since.astimezone(period.tz).date(), (period.until - timedelta(microseconds=1)).astimezone(
        period.tz).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _months(days: list[date]) -> list[str]:
    return list(dict.fromkeys(f"{day:%Y-%m}" for day in days))


def _volume(messages: list[tuple], threads: list[tuple], period: Period) -> dict:
    msg_day, thr_day = _by_key(messages, date_of), _by_key(threads, date_of)
    msg_month, thr_month = _by_key(messages, month_of), _by_key(threads, month_of)
    days = _days(period)
    return {
        "customer_messages": sum(row[1] for row in messages),
        "new_threads": sum(row[1] for row in threads),
        "by_day": [{"date": day.isoformat(), "messages": _first(msg_day, day), "threads": _first(thr_day, day)}
                   for day in days],
        "by_month": [{"month": month, "messages": _first(msg_month, month), "threads": _first(thr_month, month)}
                     for month in _months(days)],
    }


def _first(totals: dict, key) -> int:
    return totals[key][0] if key in totals else 0


def date_of(local: datetime) -> date:
    """The local calendar day."""
    return local.date()


def month_of(local: datetime) -> str:
    """The local month as "2026-11"."""
    return f"{local:%Y-%m}"


def week_of(local: datetime) -> str:
    """The ISO week as "2026-W48"."""
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def _pct(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _by_week(threads: list[tuple], period: Period) -> list[dict]:
    weeks = _by_key(threads, week_of)
    labels = dict.fromkeys(week_of(datetime.combine(day, datetime.min.time())) for day in _days(period))
    rows = []
    for label in labels:
        count, within, decided = weeks.get(label, [0, 0, 0])
        rows.append({"week": label, "threads": count, "within_sla": within, "decided": decided,
                     "within_sla_pct": _pct(within, decided)})
    return rows


def _by_hour(messages: list[tuple]) -> list[list[int]]:
    grid = [[0] * 24 for _ in range(7)]  # Monday first, as ISO weekdays
    for local, count in messages:
        grid[local.weekday()][local.hour] += count
    return grid


# -- first responses ------------------------------------------------------------------


def _histogram_edges(scope: ReportScope) -> list[float]:
    return sorted({*HISTOGRAM_EDGES_S, scope.sla_s})


def _first_response(session: Session, scope: ReportScope) -> dict:
    waits = _waits(session, scope)
    wait = waits.c.wait
    edges = _histogram_edges(scope)
    bins = [func.count(case((and_(wait > low, wait <= high), 1))) for low, high in zip([-math.inf, *edges], edges)]
    counts = session.execute(select(
        func.count(), func.count(wait), func.max(wait), func.count(case((wait <= scope.sla_s, 1))),
        func.count(case((_decided(scope, waits), 1))), *bins,
    )).one()
    total, done, longest, within, decided, *binned = counts
    median, p90 = _percentiles(session, scope)
    histogram = [{"upto_s": edge, "count": n} for edge, n in zip(edges, binned)]
    histogram.append({"upto_s": None, "count": done - sum(binned)})
    return {
        "answered": done, "unanswered": total - done,
        "median_s": median, "p90_s": p90, "max_s": longest,
        "within_sla": within, "decided": decided, "within_sla_pct": _pct(within, decided),
        "histogram": histogram,
    }


def _ranked_waits(session: Session, scope: ReportScope, by_who: bool = False):
    waits = _waits(session, scope)
    partition = [waits.c.who] if by_who else None
    return select(
        waits.c.who, waits.c.wait,
        func.row_number().over(partition_by=partition, order_by=waits.c.wait).label("rank"),
        func.count().over(partition_by=partition).label("n"),
    ).where(waits.c.wait.is_not(None)).subquery()


def _percentiles(session: Session, scope: ReportScope) -> tuple[float | None, float | None]:
    ranked = _ranked_waits(session, scope)
    return session.execute(select(
        value_at_rank(ranked.c.rank, ranked.c.n, ranked.c.wait, 50),
        value_at_rank(ranked.c.rank, ranked.c.n, ranked.c.wait, 90),
    )).one()


def _responders(session: Session, scope: ReportScope) -> list[dict]:
    ranked = _ranked_waits(session, scope, by_who=True)
    rows = session.execute(
        select(ranked.c.who, func.max(ranked.c.n), value_at_rank(ranked.c.rank, ranked.c.n, ranked.c.wait, 50))
        .group_by(ranked.c.who).order_by(func.max(ranked.c.n).desc(), ranked.c.who)).all()
    return [{"who": name, "answers": n, "median_first_response_s": median} for name, n, median in rows]


# -- now ----------------------------------------------------------------------------


def _backlog(session: Session, scope: ReportScope, now: datetime) -> dict:
    where = [Thread.status == ThreadStatus.OPEN] + ([Thread.mailbox == scope.mailbox] if scope.mailbox else [])
    bounds = [*BACKLOG_AGES_S[1:], None]
    bins = [func.count(case((and_(Thread.clock_started_at <= now - timedelta(seconds=low),
                                  *([Thread.clock_started_at > now - timedelta(seconds=high)] if high else [])), 1)))
            for low, high in zip(BACKLOG_AGES_S, bounds)]
    total, overdue, *counts = session.execute(
        select(func.count(), func.count(case((Thread.deadline_at < now, 1))), *bins).where(*where)).one()
    return {"open": total, "overdue": overdue, "as_of": iso_utc(now),
            "by_age": [{"older_than_s": low, "count": n} for low, n in zip(BACKLOG_AGES_S, counts)]}


# -- staffing ----------------------------------------------------------------------------


def _month_start(year: int, month: int, period: Period) -> datetime:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=period.tz).astimezone(UTC)


def _staffing_window(session: Session, scope: ReportScope) -> tuple[datetime, datetime]:
    period = scope.period
    local = period.until.astimezone(period.tz)
    end = _month_start(local.year, local.month, period)  # the month `until` falls in is not over
    start = _month_start(local.year, local.month - STAFFING_MONTHS, period)
    logged_from = session.scalar(select(func.min(Message.received_at)))
    if logged_from is None:
        return end, end  # nothing logged yet: no month to average
    first_day = logged_from.astimezone(period.tz).date()
    while start.astimezone(period.tz).date() < first_day and start < end:
        # A month the log began after its first day would count as quiet; it was only unrecorded.
        local_start = start.astimezone(period.tz)
        start = _month_start(local_start.year, local_start.month + 1, period)
    return start, end


def _staffing(session: Session, scope: ReportScope) -> dict:
    start, end = _staffing_window(session, scope)
    by_month = Counter()
    for slot, count in _message_buckets(session, scope, start, end):
        by_month[month_of(_local(slot, scope.period))] += count
    months = []
    cursor = start
    while cursor < end:
        label = month_of(cursor.astimezone(scope.period.tz))
        months.append({"month": label, "customer_messages": by_month[label]})
        local = cursor.astimezone(scope.period.tz)
        cursor = _month_start(local.year, local.month + 1, scope.period)
    average = sum(m["customer_messages"] for m in months) / len(months) if months else None
    suggested = math.ceil(average / RULE_PER_PERSON) if average and average >= RULE_PER_PERSON else 0
    return {"months": months, "average_per_month": average, "rule_per_person": RULE_PER_PERSON,
            "dedicated_people_suggested": suggested}


# -- questions, acks, escalations ------------------------------------------------------------------


def _question_rows(session: Session, scope: ReportScope) -> list[tuple[int, str, str]]:
    first_words = (select(Message.snippet).where(Message.thread_id == Thread.id)
                   .order_by(Message.received_at, Message.id).limit(1).scalar_subquery())
    return session.execute(
        select(Thread.id, Thread.subject, first_words).where(*_threads_in(scope))
        .order_by(Thread.first_received_at.desc()).limit(TOP_QUESTION_THREADS)).all()


def _acks(session: Session, scope: ReportScope) -> dict:
    period = scope.period
    sent = select(func.count(OutboxMail.id)).where(
        OutboxMail.kind == OutboxKind.ACK, OutboxMail.status == OutboxStatus.SENT,
        OutboxMail.created_at >= period.since, OutboxMail.created_at < period.until)
    if scope.mailbox:
        sent = sent.join(Thread, Thread.id == OutboxMail.thread_id).where(Thread.mailbox == scope.mailbox)
    outcome = Message.ack_outcome
    where = [Message.received_at >= period.since, Message.received_at < period.until, outcome.is_not(None),
             outcome != "send"] + ([Message.mailbox == scope.mailbox] if scope.mailbox else [])
    rows = session.execute(select(outcome, func.count()).where(*where).group_by(outcome)
                           .order_by(func.count().desc(), outcome)).all()
    return {"sent": session.scalar(sent), "suppressed": dict(rows)}


def _escalations(session: Session, scope: ReportScope) -> dict:
    query = (select(Escalation.step, func.count()).where(
        Escalation.created_at >= scope.period.since, Escalation.created_at < scope.period.until)
        .group_by(Escalation.step).order_by(Escalation.step))
    if scope.mailbox:
        query = query.join(Thread, Thread.id == Escalation.thread_id).where(Thread.mailbox == scope.mailbox)
    return {str(step): count for step, count in session.execute(query).all()}
