"""A person's actions on a thread: who took it (per clock), until when it is snoozed, and a log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("threads") as batch:
        batch.add_column(sa.Column("taken_by", sa.String(320)))
        batch.add_column(sa.Column("taken_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("taken_clock", sa.Integer()))
        batch.add_column(sa.Column("snoozed_until", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("snoozed_clock", sa.Integer()))
    # A plain ADD COLUMN: SQLite takes a NOT NULL column with a constant default without
    # rebuilding the table (a rebuild would lose the ticket numbering that starts at 1001).
    op.add_column("threads", sa.Column("snooze_shift_s", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.create_table(
        "thread_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("thread_id", sa.Integer(), sa.ForeignKey("threads.id"), nullable=False),
        sa.Column("clock", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("until", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_thread_actions_thread_id", "thread_actions", ["thread_id"])


def downgrade() -> None:
    op.drop_index("ix_thread_actions_thread_id", "thread_actions")
    op.drop_table("thread_actions")
    with op.batch_alter_table("threads") as batch:
        batch.drop_column("snooze_shift_s")
        batch.drop_column("snoozed_clock")
        batch.drop_column("snoozed_until")
        batch.drop_column("taken_clock")
        batch.drop_column("taken_at")
        batch.drop_column("taken_by")
