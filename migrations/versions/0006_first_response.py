"""Keep each thread's first response when it is reopened; index threads and messages for reports.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("threads") as batch:
        batch.add_column(sa.Column("first_answered_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("first_answered_via", sa.String(32)))
        batch.add_column(sa.Column("first_answered_by", sa.String(320)))
    # Threads still on their first clock hold their first answer; a reopened one's is lost already.
    op.execute("UPDATE threads SET first_answered_at = answered_at, first_answered_via = answered_via,"
               " first_answered_by = answered_by WHERE clock = 1 AND answered_at IS NOT NULL")
    op.create_index("ix_threads_first_received_at", "threads", ["first_received_at"])
    op.create_index("ix_messages_report", "messages", ["received_at", "category", "mailbox", "folder", "ack_outcome"])


def downgrade() -> None:
    op.drop_index("ix_messages_report", table_name="messages")
    op.drop_index("ix_threads_first_received_at", table_name="threads")
    with op.batch_alter_table("threads") as batch:
        batch.drop_column("first_answered_by")
        batch.drop_column("first_answered_via")
        batch.drop_column("first_answered_at")
