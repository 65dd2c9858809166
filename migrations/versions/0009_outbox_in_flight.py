"""The outbox knows which claim holds a row and whether its send was handed to the server.

`claim_token` fences a claim (its lease can be renewed without losing who owns it);
`sending_since` is written before the SMTP transaction, so after a crash only the rows
that carry it can have been delivered already.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claim_token", sa.String(32)))
        batch.add_column(sa.Column("sending_since", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("sending_since")
        batch.drop_column("claim_token")
