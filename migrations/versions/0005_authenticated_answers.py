"""How each answer was authenticated, and the source domain an ack is rationed by.

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


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("source_domain")
    with op.batch_alter_table("threads") as batch:
        batch.drop_column("answered_auth")
