"""The message log: folder sync state, threads and messages.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FIRST_TICKET = 1001  # copied, not imported: a migration must not change when models do

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "folder_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mailbox", sa.String(64), nullable=False),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        sa.Column("highest_modseq", sa.BigInteger),
        sa.Column("last_sync_at", Timestamp),
        sa.UniqueConstraint("mailbox", "folder", name="uq_folder_state_mailbox_folder"),
    )
    _create_threads()
    _create_messages()


def _create_threads() -> None:
    op.create_table(
        "threads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mailbox", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("customer_address", sa.String(320), nullable=False),
        sa.Column("customer_name", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("first_received_at", Timestamp, nullable=False),
        sa.Column("last_customer_at", Timestamp, nullable=False),
        sa.Column("clock", sa.Integer, nullable=False),
        sa.Column("clock_started_at", Timestamp),
        sa.Column("deadline_at", Timestamp),
        sa.Column("answered_at", Timestamp),
        sa.Column("answered_via", sa.String(32)),
        sa.Column("answered_by", sa.String(320)),
        sa.Column("escalation_level", sa.Integer, nullable=False),
        sa.Column("message_count", sa.Integer, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_threads_customer_address", "threads", ["customer_address"])
    op.create_index(
        "ix_threads_open_deadline",
        "threads",
        ["deadline_at"],
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER SEQUENCE threads_id_seq RESTART WITH {FIRST_TICKET}")
    else:
        op.execute(f"INSERT INTO sqlite_sequence (name, seq) VALUES ('threads', {FIRST_TICKET - 1})")


def _create_messages() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mailbox", sa.String(64), nullable=False),
        sa.Column("folder", sa.String(255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("uid", sa.BigInteger, nullable=False),
        sa.Column("message_id", sa.String(500), nullable=False),
        sa.Column("message_id_synthesised", sa.Boolean, nullable=False),
        sa.Column("from_address", sa.String(320)),
        sa.Column("from_name", sa.Text, nullable=False),
        sa.Column("from_all", sa.Text, nullable=False),
        sa.Column("reply_to", sa.Text, nullable=False),
        sa.Column("to_addrs", sa.Text, nullable=False),
        sa.Column("cc_addrs", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("date_header", sa.Text),
        sa.Column("date_at", Timestamp),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("first_seen_at", Timestamp, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("in_reply_to", sa.Text),
        sa.Column("references", sa.Text, nullable=False),
        sa.Column("flags", sa.Text, nullable=False),
        sa.Column("snippet", sa.Text, nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("category_reason", sa.Text, nullable=False),
        sa.Column("ack_outcome", sa.String(40)),
        sa.Column("ack_reason", sa.Text),
        sa.Column("thread_id", sa.Integer, sa.ForeignKey("threads.id", name="fk_messages_thread_id_threads")),
        sa.Column("parse_error", sa.Text),
        sa.UniqueConstraint(
            "mailbox", "folder", "uidvalidity", "uid",
            name="uq_messages_mailbox_folder_uidvalidity_uid",
        ),
        sa.UniqueConstraint(
            "mailbox", "folder", "message_id", "received_at",
            name="uq_messages_mailbox_folder_message_id_received_at",
        ),
    )
    op.create_index("ix_messages_message_id", "messages", ["message_id"])
    op.create_index("ix_messages_received_at", "messages", ["received_at"])
    op.create_index("ix_messages_thread_id", "messages", ["thread_id"])


def downgrade() -> None:
    op.drop_table("messages")
    op.drop_table("threads")
    op.drop_table("folder_state")
