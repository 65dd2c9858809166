"""Escalations: the next step's due time on each thread, and each step sent.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("threads") as batch:
        batch.add_column(sa.Column("next_escalation_at", Timestamp))
    op.create_index(
        "ix_threads_open_next_escalation",
        "threads",
        ["next_escalation_at"],
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("thread_id", sa.Integer, sa.ForeignKey("threads.id", name="fk_escalations_thread_id_threads"),
                  nullable=False),
        sa.Column("clock", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("thread_id", "clock", "step", name="uq_escalations_thread_id_clock_step"),
    )
    op.create_table(
        "service_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_state")
    op.drop_table("escalations")
    op.drop_index("ix_threads_open_next_escalation", table_name="threads")
    with op.batch_alter_table("threads") as batch:
        batch.drop_column("next_escalation_at")
