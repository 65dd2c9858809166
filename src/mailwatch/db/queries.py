"""Read-side queries shared by the CLI, the service and the reports."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailwatch.db.models import Thread
from mailwatch.sla import ThreadStatus


def list_threads(session: Session, open_only: bool = False) -> Sequence[Thread]:
    """Threads by ticket number, or the open ones by how soon they are due."""
    query = select(Thread)
    if open_only:
        return session.scalars(query.where(Thread.status == ThreadStatus.OPEN).order_by(Thread.deadline_at, Thread.id)).all()
    return session.scalars(query.order_by(Thread.id)).all()
