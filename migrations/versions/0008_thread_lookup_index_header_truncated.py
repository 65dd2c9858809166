"""A (thread, Message-ID) index and messages.header_truncated (issue 11).

"Is this Message-ID already in this thread?" was answered through the thread_id
index, reading every message of the thread: 14 ms per new message at 100,000.
The composite index answers it in one B-tree descent. header_truncated records
that only the first 64 KiB of a message's header were fetched.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_thread_id_message_id", "messages", ["thread_id", "message_id"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("header_truncated", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("header_truncated")
    op.drop_index("ix_messages_thread_id_message_id", table_name="messages")
