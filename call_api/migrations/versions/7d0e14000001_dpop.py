"""DPoP (RFC 9449): the replay cache of proofs presented with DPoP-bound access tokens

Revision ID: 7d0e14000001
Revises: 7c4d0a0d1e04
Create Date: 2026-12-01 07:20:00

"""

import sqlalchemy as sa
from alembic import op

revision = "7d0e14000001"
down_revision = "7c4d0a0d1e04"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "dpop_jtis",
        sa.Column("jti_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("jti_hash"),
    )
    with op.batch_alter_table("dpop_jtis", schema=None) as batch_op:
        batch_op.create_index("ix_dpop_jtis_expires_at", ["expires_at"], unique=False)


def downgrade():
    with op.batch_alter_table("dpop_jtis", schema=None) as batch_op:
        batch_op.drop_index("ix_dpop_jtis_expires_at")
    op.drop_table("dpop_jtis")
