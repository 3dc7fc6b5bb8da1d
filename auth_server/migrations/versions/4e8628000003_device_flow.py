"""Device authorization grant (RFC 8628): device codes

Revision ID: 4e8628000003
Revises: 4d7591000002
Create Date: 2026-12-01 07:10:00

The ``device_codes`` table (auth_server/device_flow.py), and ``tokens.grant_type`` widened
to 64 characters: the device grant's name is a 44-character URN.
"""

import sqlalchemy as sa
from alembic import op

revision = "4e8628000003"
down_revision = "4d7591000002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "device_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_code", sa.String(length=8), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("poll_interval", sa.Integer(), nullable=False),
        sa.Column("last_polled_at", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("approved_scope", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("device_code_hash"),
        sa.UniqueConstraint("user_code"),
    )
    with op.batch_alter_table("device_codes", schema=None) as batch_op:
        batch_op.create_index("ix_device_codes_expires_at", ["expires_at"], unique=False)
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.alter_column(
            "grant_type",
            existing_type=sa.String(length=40),
            type_=sa.String(length=64),
            existing_nullable=False,
        )


def downgrade():
    # Tokens of the device grant do not fit the narrower column: they go (they were
    # issued by a feature this revision does not have).
    op.execute(
        "DELETE FROM tokens WHERE grant_type = 'urn:ietf:params:oauth:grant-type:device_code'"
    )
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.alter_column(
            "grant_type",
            existing_type=sa.String(length=64),
            type_=sa.String(length=40),
            existing_nullable=False,
        )
    with op.batch_alter_table("device_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_device_codes_expires_at")
    op.drop_table("device_codes")
