"""Dynamic client registration (RFC 7591/7592): initial access tokens

Revision ID: 4d7591000002
Revises: 4c0e1d000001
Create Date: 2026-12-01 07:10:00

Initial access tokens (``registration_tokens``, hashed), the registration access token of a
dynamically registered client (``clients.registration_token_hash``, hashed), the encrypted
secret of a ``client_secret_jwt`` client (``clients.client_secret_encrypted``), and the used
``jti`` of client assertions (``client_assertion_jtis``). The two client columns are
nullable: plain ADD COLUMN (the unique index is created apart), no table rebuild on SQLite.
"""

import sqlalchemy as sa
from alembic import op

revision = "4d7591000002"
down_revision = "4c0e1d000001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "registration_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "client_assertion_jtis",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_hash"),
    )
    op.create_index("ix_client_assertion_jtis_expires_at", "client_assertion_jtis", ["expires_at"])
    op.add_column(
        "clients", sa.Column("registration_token_hash", sa.String(length=64), nullable=True)
    )
    op.add_column("clients", sa.Column("client_secret_encrypted", sa.Text(), nullable=True))
    op.create_index(
        "ix_clients_registration_token_hash",
        "clients",
        ["registration_token_hash"],
        unique=True,
    )


def downgrade():
    op.drop_index("ix_clients_registration_token_hash", table_name="clients")
    # SQLite drops a column in place (3.35+); no batch rebuild needed.
    op.drop_column("clients", "client_secret_encrypted")
    op.drop_column("clients", "registration_token_hash")
    op.drop_index("ix_client_assertion_jtis_expires_at", table_name="client_assertion_jtis")
    op.drop_table("client_assertion_jtis")
    op.drop_table("registration_tokens")
