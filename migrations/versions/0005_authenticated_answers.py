"""How each answer was authenticated; what an ack's rate limits key on, indexed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("threads", sa.Column("answered_auth", sa.String(32), nullable=True))
    op.add_column("outbox", sa.Column("source_domain", sa.String(255), nullable=True))
    op.add_column("outbox", sa.Column("recipient_key", sa.String(320), nullable=True))
    op.create_index("ix_outbox_kind_recipient_key_created", "outbox", ["kind", "recipient_key", "created_at"])
    op.create_index("ix_outbox_kind_source_domain_status", "outbox", ["kind", "source_domain", "status"])
    op.create_index("ix_outbox_kind_status_created", "outbox", ["kind", "status", "created_at"])
    # Acks queued before this version: their recipient is already lowercased; +detail stays.
    op.execute("UPDATE outbox SET recipient_key = recipient WHERE kind = 'ack'")


def downgrade() -> None:
    op.drop_index("ix_outbox_kind_status_created", table_name="outbox")
    op.drop_index("ix_outbox_kind_source_domain_status", table_name="outbox")
    op.drop_index("ix_outbox_kind_recipient_key_created", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("recipient_key")
        batch.drop_column("source_domain")
    with op.batch_alter_table("threads") as batch:
        batch.drop_column("answered_auth")
