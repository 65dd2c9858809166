"""Two instances starting together on one empty PostgreSQL database."""

import threading
import time

import pytest
from sqlalchemy import func, select

from mailwatch.db.models import FolderState
from mailwatch.pipeline.sync import folder_state

POSTGRES_ONLY = pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                                        indirect=True)


@POSTGRES_ONLY
def test_two_instances_creating_one_folder_state_both_succeed(db, db_for, settings):
    # The second insert waits for the first and then finds its row: no UniqueViolation to log.
    other = db_for(settings)
    start, errors = threading.Barrier(2), []

    def create(database) -> None:
        start.wait()
        try:
            with database.session() as session:
                folder_state(session, "support", "INBOX")
                time.sleep(0.3)  # hold the new row uncommitted while the other instance inserts
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(database,)) for database in (db, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(FolderState)) == 1
