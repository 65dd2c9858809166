"""How the drain writes: a round's outcomes in few lease-checked UPDATEs, and writes that share transactions."""

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import event, select
from structlog.testing import capture_logs

from mailwatch.db.engine import Database
from mailwatch.db.models import OutboxMail
from mailwatch.errors import PermanentError, TransientError
from mailwatch.pipeline.outbox import FAILED, LOST, PENDING, SENT, Outbox, RetryPolicy, Written, _Ledger, enqueue

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def box(db: Database) -> Outbox:
    return Outbox(db, connect=None, clock=lambda: T0 + timedelta(seconds=5), policy=RetryPolicy())


def queue(db: Database, count: int) -> None:
    with db.session() as session:
        for n in range(count):
            message = EmailMessage()
            message["Subject"], message["Message-ID"] = f"Re: help {n}", f"<mailwatch.{n}@acme.example>"
            message.set_content("We got your mail.")
            assert enqueue(session, kind="ack", dedupe_key=f"ack:{n}", message=message,
                           recipient=f"c{n}@example.com", envelope_from="support@acme.example", now=T0)


def rows(db: Database) -> list[OutboxMail]:
    with db.session() as session:
        return list(session.scalars(select(OutboxMail).order_by(OutboxMail.id)))


def take_over(db: Database, outbox_id: int) -> None:
    """Another sender's claim on the row, as after our lease ran out."""
    with db.session() as session:
        row = session.get(OutboxMail, outbox_id)
        row.claimed_until, row.claim_token, row.sending_since = T0 + timedelta(minutes=9), "other", None


class Statements:
    """The UPDATE statements one block runs against the outbox, and the commits."""

    def __init__(self, db: Database) -> None:
        self.engine, self.updates, self.commits = db.engine, [], 0

    def __enter__(self) -> "Statements":
        event.listen(self.engine, "before_cursor_execute", self._seen)
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)
        event.remove(self.engine, "commit", self._commit)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            self.updates.append(statement)

    def _commit(self, conn) -> None:
        self.commits += 1


def test_the_sent_mails_of_a_round_are_recorded_with_one_update_in_one_transaction(db):
    # Ten accepted mails: one lease-checked UPDATE, one commit, each row sent and released.
    outbox = box(db)
    queue(db, 10)
    claimed = outbox.claim(10)
    with Statements(db) as seen:
        written = outbox.write([(item, None) for item in claimed], [])
    assert len(seen.updates) == 1 and "claim_token" in seen.updates[0] and seen.commits == 1
    assert set(written.outcomes.values()) == {(SENT, None)}
    assert {(row.status, row.claim_token, row.sent_at) for row in rows(db)} == {(SENT, None, T0 + timedelta(seconds=5))}


def test_a_row_another_sender_took_over_keeps_its_new_owner_in_a_round_write(db):
    # The round's UPDATE checks the claim token: ours are recorded, the taken row stays as its owner left it.
    outbox = box(db)
    queue(db, 3)
    first, taken, third = outbox.claim(10)
    take_over(db, taken.id)
    with capture_logs() as logs:
        written = outbox.write([(first, None), (taken, None), (third, TransientError("451 later"))], [])
    assert written.outcomes == {first.id: (SENT, None), taken.id: (LOST, None), third.id: (PENDING, "451 later")}
    by_id = {row.id: row for row in rows(db)}
    assert (by_id[taken.id].status, by_id[taken.id].claim_token, by_id[taken.id].sent_at) == (PENDING, "other", None)
    assert (by_id[third.id].attempts, by_id[third.id].claim_token) == (1, None)
    assert [e["event"] for e in logs] == ["mail_sent", "outbox_lease_lost", "mail_deferred"]


def test_a_mail_is_marked_sending_only_while_its_row_is_ours(db):
    # The mark before the SMTP transaction is lease-checked too: a taken row is not handed over.
    outbox = box(db)
    queue(db, 2)
    ours, taken = outbox.claim(10)
    take_over(db, taken.id)
    assert outbox.write([], [ours, taken]).marked == {ours.id}
    assert [row.sending_since is not None for row in rows(db)] == [True, False]


def test_an_outcome_and_the_next_mark_go_in_one_transaction(db):
    # What a connection writes between two mails is one commit: the previous outcome, the next mark.
    outbox = box(db)
    queue(db, 2)
    done, nxt = outbox.claim(10)
    outbox.write([], [done])
    with Statements(db) as seen:
        written = outbox.write([(done, PermanentError("550 no such user"))], [nxt])
    assert seen.commits == 1 and written.marked == {nxt.id}
    assert written.outcomes[done.id] == (FAILED, "550 no such user")
    assert [(row.status, row.sending_since is not None) for row in rows(db)] == [(FAILED, False), (PENDING, True)]


def test_writes_handed_in_during_a_commit_share_the_next_one():
    # Group commit: the first write goes alone, the two that queue behind it go together.
    commits: list[tuple[list, list]] = []
    started, release = threading.Event(), threading.Event()

    def write(finished, marks) -> Written:
        commits.append((finished, marks))
        if len(commits) == 1:
            started.set()
            release.wait(5)
        return Written({}, set(marks))

    async def scenario() -> list[Written]:
        ledger = _Ledger(write)
        first = asyncio.create_task(ledger.write([], [1]))
        await asyncio.to_thread(started.wait, 5)
        later = [asyncio.create_task(ledger.write([], [n])) for n in (2, 3)]
        await asyncio.sleep(0)  # both are queued before the first commit returns
        release.set()
        return [await first, *[await task for task in later]]

    results = asyncio.run(scenario())
    assert [marks for _finished, marks in commits] == [[1], [2, 3]]
    assert [result.marked for result in results] == [{1}, {2, 3}, {2, 3}]


def test_a_failed_commit_is_reported_to_every_write_it_carried():
    # Each writer learns that its outcomes were not stored, and keeps them owed.
    def write(finished, marks) -> Written:
        raise RuntimeError("disk full")

    async def scenario():
        ledger = _Ledger(write)
        return await asyncio.gather(ledger.write([], [1]), ledger.write([], [2]), return_exceptions=True)

    assert [str(result) for result in asyncio.run(scenario())] == ["disk full", "disk full"]
