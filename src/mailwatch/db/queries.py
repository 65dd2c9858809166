"""Read-side queries shared by the CLI, the service and the reports."""

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailwatch.db.models import Escalation, Thread, ThreadAction
from mailwatch.sla import ThreadStatus


def list_threads(session: Session, open_only: bool = False) -> Sequence[Thread]:
    """Threads by ticket number, or the open ones by how soon they are due."""
    query = select(Thread)
    if open_only:
        return session.scalars(query.where(Thread.status == ThreadStatus.OPEN).order_by(Thread.deadline_at, Thread.id)).all()
    return session.scalars(query.order_by(Thread.id)).all()


def escalations_sent(session: Session) -> dict[int, int]:
    """How many escalation steps actually went out on each thread's current clock (absent: none).

    `escalation_level` counts the steps passed, which includes those skipped for mail
    older than `acknowledgment.max_age` on a first start: only Escalation rows were sent.
    """
    rows = session.execute(
        select(Escalation.thread_id, func.count())
        .join(Thread, (Thread.id == Escalation.thread_id) & (Thread.clock == Escalation.clock))
        .group_by(Escalation.thread_id)
    )
    return dict(rows.all())


def actions_by_thread(session: Session, thread_id: int | None = None) -> dict[int, list[ThreadAction]]:
    """Every thread's (or one thread's) recorded actions, from links and the CLI, oldest first, in one query."""
    query = select(ThreadAction).order_by(ThreadAction.thread_id, ThreadAction.at, ThreadAction.id)
    if thread_id is not None:
        query = query.where(ThreadAction.thread_id == thread_id)
    grouped: dict[int, list[ThreadAction]] = {}
    for action in session.scalars(query):
        grouped.setdefault(action.thread_id, []).append(action)
    return grouped
