"""OAuth2 sign-ins (Microsoft 365, Google Workspace): their tokens, shared by all instances.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

# Migrations never import the models: they must keep working as the models change.
Timestamp = sa.DateTime(timezone=True)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth2_tokens",
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("flow", sa.String(32), nullable=False),
        sa.Column("account", sa.String(320), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("access_expires_at", Timestamp, nullable=True),
        sa.Column("signed_in_at", Timestamp, nullable=False),
        sa.Column("refreshed_at", Timestamp, nullable=True),
        sa.Column("failed_at", Timestamp, nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_oauth2_tokens"),
    )


def downgrade() -> None:
    op.drop_table("oauth2_tokens")
