"""revocation feed

Revision ID: 3e40cf33d0e4
Revises: 3c0de4e91ace
Create Date: 2026-12-01 02:20:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "3e40cf33d0e4"
down_revision = "3c0de4e91ace"
branch_labels = None
depends_on = None


def upgrade():
    # The id is the feed's cursor: AUTOINCREMENT so SQLite never hands out an id again
    # after the newest rows were pruned (PostgreSQL's sequence never does).
    op.create_table(
        "revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("issued_before", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    # Plain CREATE INDEX: no table rebuild on SQLite, which would drop AUTOINCREMENT.
    op.create_index("ix_revocations_expires_at", "revocations", ["expires_at"], unique=False)
    op.create_index("ix_revocations_kind_value", "revocations", ["kind", "value"], unique=False)


def downgrade():
    op.drop_index("ix_revocations_kind_value", table_name="revocations")
    op.drop_index("ix_revocations_expires_at", table_name="revocations")
    op.drop_table("revocations")
