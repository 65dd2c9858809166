"""`mailwatch report` on planted data: every figure equals what was planted, on SQLite and PostgreSQL."""

import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailwatch.db.engine import Database
from mailwatch.db.models import Escalation, Message, OutboxKind, OutboxMail, OutboxStatus, Thread
from mailwatch.reports import Period, ReportScope, build_report
from mailwatch.reports.csv import write_csv
from mailwatch.reports.text import render_text

BERLIN = ZoneInfo("Europe/Berlin")
SINCE = datetime(2026, 9, 1, tzinfo=BERLIN).astimezone(UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=BERLIN).astimezone(UTC)
SLA_S = 24 * 3600
WAITS_S = [1800, 7200, 5 * 3600, 20 * 3600, 30 * 3600, None]  # cycled; None stays unanswered
MONTH_THREADS = {9: 150, 10: 300, 11: 200}  # three messages each: 450, 900, 600 customer messages
QUESTIONS = ["Where is my order?", "Wo ist meine Bestellung?", "Où est ma commande ?", "Refund request"]


@dataclass
class Planted:
    """One planted thread: when it started, how long the first answer took, what it asked."""

    started: datetime
    wait_s: int | None
    subject: str
    who: str


def one_off_subject(n: int) -> str:
    # Letters only, unique in their first five (the stem): no two one-offs share a word.
    return "".join("abcdefghij"[int(d)] for d in f"{n:05d}"[::-1]) + "q"


def planted_threads() -> list[Planted]:
    threads = []
    for month, count in MONTH_THREADS.items():
        for n in range(count):
            local = datetime(2026, month, 1 + n % 28, (7 + 5 * n) % 24, (13 * n) % 60, tzinfo=BERLIN)
            index = len(threads)
            subject = QUESTIONS[index % 8] if index % 8 < len(QUESTIONS) else one_off_subject(index)
            threads.append(Planted(local.astimezone(UTC), WAITS_S[index % len(WAITS_S)], subject,
                                   ("ann@acme.example", "bob@acme.example")[index % 2]))
    return threads


def plant(db: Database, planted: list[Planted]) -> None:
    with db.session() as session:
        for index, fact in enumerate(planted):
            session.add(_thread(index, fact))
        session.flush()
        for thread in session.query(Thread).order_by(Thread.id):
            for k in range(3):  # the customer wrote, and twice more within the hour
                session.add(_message(thread, k))
        # A customer's address in our Sent folder is a reply we filed: not an enquiry.
        session.add(Message(mailbox="support", folder="Sent", uidvalidity=1, uid=1, message_id="<sent@x>",
                            received_at=SINCE + timedelta(days=3), first_seen_at=SINCE, category="customer"))
        other = Thread(mailbox="sales", subject="Quote", customer_address="c@other.example",
                       first_received_at=SINCE + timedelta(days=2), last_customer_at=SINCE, clock=1,
                       created_at=SINCE, status="open", clock_started_at=SINCE)
        session.add(other)
        session.flush()
        session.add(_message(other, 0))
        _plant_mail_about_mail(session)


def _thread(index: int, fact: Planted) -> Thread:
    answered = fact.started + timedelta(seconds=fact.wait_s) if fact.wait_s is not None else None
    status = "answered" if answered else "open"
    thread = Thread(mailbox="support", subject=fact.subject, customer_address=f"c{index}@example.com",
                    status=status, first_received_at=fact.started, last_customer_at=fact.started, clock=1,
                    clock_started_at=fact.started, created_at=fact.started, message_count=3,
                    deadline_at=None if answered else fact.started + timedelta(seconds=SLA_S),
                    answered_at=answered, answered_by=fact.who if answered else None,
                    first_answered_at=answered, first_answered_by=fact.who if answered else None,
                    first_answered_via="staff" if answered else None)
    if index == 0:  # closed and reopened later: a new clock, a later answer, the first one kept
        thread.clock, thread.answered_at = 2, fact.started + timedelta(days=20)
    return thread


def _message(thread: Thread, k: int) -> Message:
    return Message(mailbox=thread.mailbox, folder="INBOX", uidvalidity=1, uid=thread.id * 10 + k,
                   message_id=f"<{thread.id}.{k}@example.com>", subject=thread.subject,
                   received_at=thread.first_received_at + timedelta(minutes=20 * k), first_seen_at=SINCE,
                   category="customer", thread_id=thread.id, snippet="Hello, please help." if k == 0 else "",
                   ack_outcome=("send" if k == 0 else "not-first") if thread.mailbox == "support" else None)


def _plant_mail_about_mail(session) -> None:
    thread_id = session.query(Thread.id).order_by(Thread.id).first()[0]
    for n in range(5):
        session.add(OutboxMail(kind=OutboxKind.ACK, dedupe_key=f"ack:{n}", thread_id=thread_id,
                               message_id=f"<a{n}@x>", recipient="c@example.com", content=b"",
                               status=OutboxStatus.SENT if n < 4 else OutboxStatus.PENDING,
                               next_attempt_at=SINCE, created_at=SINCE + timedelta(days=n)))
    for step, clock in ((1, 1), (1, 2), (2, 1)):
        session.add(Escalation(thread_id=thread_id, clock=clock, step=step, created_at=SINCE + timedelta(days=1)))


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(len(ordered) * percent / 100) - 1]


@pytest.fixture
def planted(database_url):
    db = Database(database_url)
    db.ensure_schema()
    facts = planted_threads()
    plant(db, facts)
    yield db, facts
    db.dispose()


def report_of(db: Database, mailbox: str | None = "support", now: datetime = UNTIL) -> dict:
    scope = ReportScope(Period(SINCE, UNTIL, BERLIN), SLA_S, mailbox, sent_folders=(("support", "Sent"),))
    with db.session() as session:
        return build_report(session, scope, now)


def test_first_responses_equal_the_planted_waits(planted):
    # Median and p90 are nearest-rank (values that occurred); the reopened thread keeps its first answer.
    db, facts = planted
    first = report_of(db)["first_response"]
    waits = [fact.wait_s for fact in facts if fact.wait_s is not None]
    assert (first["answered"], first["unanswered"]) == (len(waits), len(facts) - len(waits))
    assert (first["median_s"], first["p90_s"], first["max_s"]) == (
        nearest_rank(waits, 50), nearest_rank(waits, 90), max(waits))
    assert first["within_sla"] == sum(wait <= SLA_S for wait in waits)
    assert first["decided"] == len(facts)  # every planted thread is older than the SLA by the end
    assert first["within_sla_pct"] == round(100 * first["within_sla"] / len(facts), 1)
    assert sum(row["count"] for row in first["histogram"]) == len(waits)
    by_edge = {row["upto_s"]: row["count"] for row in first["histogram"]}
    assert by_edge[3600] == waits.count(1800) and by_edge[8 * 3600] == waits.count(5 * 3600)
    assert by_edge[24 * 3600] == waits.count(20 * 3600) and by_edge[48 * 3600] == waits.count(30 * 3600)


def test_volumes_by_day_month_week_and_hour_equal_the_planted_ones(planted):
    # Local days and hours in the service's zone, across the end of summer time on 25 October.
    db, facts = planted
    report = report_of(db)
    volume = report["volume"]
    assert (volume["customer_messages"], volume["new_threads"]) == (3 * len(facts), len(facts))
    assert [row["messages"] for row in volume["by_month"]] == [450, 900, 600]
    assert [row["threads"] for row in volume["by_month"]] == [150, 300, 200]
    days = Counter(fact.started.astimezone(BERLIN).date().isoformat() for fact in facts)
    assert {row["date"]: row["threads"] for row in volume["by_day"] if row["threads"]} == dict(days)
    assert len(volume["by_day"]) == 91
    hours = [[0] * 24 for _ in range(7)]
    for fact in facts:
        for k in range(3):
            local = (fact.started + timedelta(minutes=20 * k)).astimezone(BERLIN)
            hours[local.weekday()][local.hour] += 1
    assert report["by_hour"] == hours
    weeks = Counter(f"{fact.started.astimezone(BERLIN).isocalendar()[0]}-W"
                    f"{fact.started.astimezone(BERLIN).isocalendar()[1]:02d}" for fact in facts)
    assert {row["week"]: row["threads"] for row in report["by_week"] if row["threads"]} == dict(weeks)


def test_staffing_follows_the_400_a_month_rule(planted):
    # September to November averaged 650 customer messages: two people, and the text says why.
    db, _ = planted
    report = report_of(db)
    staffing = report["staffing"]
    assert [m["customer_messages"] for m in staffing["months"]] == [450, 900, 600]
    assert staffing["average_per_month"] == 650 and staffing["dedicated_people_suggested"] == 2
    assert "averaged 650 customer messages a month" in render_text(report, BERLIN)
    assert "calls for 2 people on email" in render_text(report, BERLIN)


def test_backlog_responders_acks_and_escalations_equal_the_planted_ones(planted):
    # Open threads by age as of now, first answers per person, mail about mail.
    db, facts = planted
    report = report_of(db)
    unanswered = [fact for fact in facts if fact.wait_s is None]
    assert (report["backlog"]["open"], report["backlog"]["overdue"]) == (len(unanswered), len(unanswered))
    assert sum(row["count"] for row in report["backlog"]["by_age"]) == len(unanswered)
    by_person = {}
    for fact in facts:
        if fact.wait_s is not None:
            by_person.setdefault(fact.who, []).append(fact.wait_s)
    assert {r["who"]: (r["answers"], r["median_first_response_s"]) for r in report["responders"]} == {
        who: (len(waits), nearest_rank(waits, 50)) for who, waits in by_person.items()}
    assert report["acks"] == {"sent": 4, "suppressed": {"not-first": 2 * len(facts)}}
    assert report["escalations"] == {"1": 2, "2": 1}


def test_top_questions_are_the_planted_groups(planted):
    # Four planted questions (three languages) recur; the one-offs do not.
    db, facts = planted
    top = report_of(db)["top_questions"]
    counts = Counter(fact.subject for fact in facts if fact.subject in QUESTIONS)
    assert {row["label"]: row["count"] for row in top} == dict(counts)
    assert all(len(row["tickets"]) == 3 and row["faq_entry"] is None for row in top)


def test_all_mailboxes_include_the_other_one(planted):
    # Without --mailbox, every mailbox counts; with it, only that one.
    db, facts = planted
    assert report_of(db, mailbox=None)["volume"]["new_threads"] == len(facts) + 1
    assert report_of(db, mailbox="support")["volume"]["new_threads"] == len(facts)


def test_csv_writes_one_file_per_table(planted, tmp_path):
    # Spreadsheets get every table, with a header row.
    db, _ = planted
    paths = write_csv(report_of(db), tmp_path / "csv")
    assert {path.stem for path in paths} >= {"volume_by_day", "sla_by_week", "messages_by_hour", "top_questions"}
    assert (tmp_path / "csv" / "volume_by_month.csv").read_text().splitlines() == [
        "month,messages,threads", "2026-09,450,150", "2026-10,900,300", "2026-11,600,200"]


def test_the_90th_percentile_never_exceeds_the_longest_wait(database_url):
    # Two answers, ~3 days and a few seconds: the 90th percentile is the 3 days, not an extrapolation.
    db = Database(database_url)
    db.ensure_schema()
    plant(db, [])
    start = SINCE + timedelta(days=1)
    with db.session() as session:
        for index, wait in enumerate([3 * 86400 - 7, 5]):
            session.add(_thread(index + 1, Planted(start, wait, "x", "ann@acme.example")))
    first = report_of(db)["first_response"]
    assert (first["median_s"], first["p90_s"], first["max_s"]) == (5, 3 * 86400 - 7, 3 * 86400 - 7)
    db.dispose()


def test_local_days_and_hours_follow_a_half_hour_zone(sqlite_url):
    # 18:40 UTC on Tuesday 10 November is 00:10 on Wednesday the 11th in Kolkata (+05:30).
    db = Database(sqlite_url)
    db.ensure_schema()
    plant(db, [Planted(datetime(2026, 11, 10, 18, 40, tzinfo=UTC), 60, "x", "ann@acme.example")])
    kolkata = ZoneInfo("Asia/Kolkata")
    scope = ReportScope(Period(datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 13, tzinfo=UTC), kolkata), SLA_S,
                        "support")
    with db.session() as session:
        report = build_report(session, scope, UNTIL)
    assert {row["date"]: row["threads"] for row in report["volume"]["by_day"] if row["threads"]} == {"2026-11-11": 1}
    assert report["by_hour"][2][0] == 3 and sum(map(sum, report["by_hour"])) == 3  # 00:10, 00:30, 00:50
    db.dispose()


def test_an_empty_log_has_no_month_to_staff_by(sqlite_url):
    # Nothing logged yet is not three quiet months.
    db = Database(sqlite_url)
    db.ensure_schema()
    staffing = report_of(db)["staffing"]
    assert staffing["months"] == [] and staffing["dedicated_people_suggested"] == 0
    assert "no full month" in render_text(report_of(db), BERLIN)
    db.dispose()
