"""OpenID Connect: user profile fields, nonce and auth_time on codes

Revision ID: 4c0e1d000001
Revises: 4b2c0501e002
Create Date: 2026-12-01 07:10:00

``users`` gains ``name``, ``email`` and ``email_verified`` (the ``profile`` and ``email``
claims); ``authorization_codes`` the request's ``nonce`` (``auth_time`` was there already);
``oidc_nonces`` remembers the nonces ID tokens were issued with (replays are refused).
"""

import sqlalchemy as sa
from alembic import op

revision = "4c0e1d000001"
down_revision = "4b2c0501e002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=True))
        batch_op.add_column(
            sa.Column("email_verified", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("nonce", sa.String(length=255), nullable=True))
    op.create_table(
        "oidc_nonces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("nonce_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "nonce_hash", name="uq_oidc_nonce_client"),
    )
    with op.batch_alter_table("oidc_nonces", schema=None) as batch_op:
        batch_op.create_index("ix_oidc_nonces_expires_at", ["expires_at"], unique=False)


def downgrade():
    with op.batch_alter_table("oidc_nonces", schema=None) as batch_op:
        batch_op.drop_index("ix_oidc_nonces_expires_at")
    op.drop_table("oidc_nonces")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("nonce")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_verified")
        batch_op.drop_column("email")
        batch_op.drop_column("name")
