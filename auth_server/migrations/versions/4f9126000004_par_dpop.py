"""Pushed authorization requests (RFC 9126) and DPoP (RFC 9449)

Revision ID: 4f9126000004
Revises: 4e8628000003
Create Date: 2026-12-01 07:10:00

The ``pushed_authorization_requests`` table (auth_server/par.py), the DPoP replay cache
``dpop_jtis`` (shared/dpop.py), and the DPoP key bindings of refresh tokens
(``tokens.dpop_jkt``) and authorization codes (``authorization_codes.dpop_jkt``).
"""

import sqlalchemy as sa
from alembic import op

revision = "4f9126000004"
down_revision = "4e8628000003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pushed_authorization_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_uri_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_uri_hash"),
    )
    with op.batch_alter_table("pushed_authorization_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_pushed_authorization_requests_expires_at", ["expires_at"], unique=False
        )
    op.create_table(
        "dpop_jtis",
        sa.Column("jti_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("jti_hash"),
    )
    with op.batch_alter_table("dpop_jtis", schema=None) as batch_op:
        batch_op.create_index("ix_dpop_jtis_expires_at", ["expires_at"], unique=False)
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("dpop_jkt")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("dpop_jkt")
    with op.batch_alter_table("dpop_jtis", schema=None) as batch_op:
        batch_op.drop_index("ix_dpop_jtis_expires_at")
    op.drop_table("dpop_jtis")
    with op.batch_alter_table("pushed_authorization_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_pushed_authorization_requests_expires_at")
    op.drop_table("pushed_authorization_requests")
