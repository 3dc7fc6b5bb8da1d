"""consistent reuse detection under concurrency

Revision ID: 3c0de4e91ace
Revises: 3b5e551015e2
Create Date: 2026-12-01 02:20:00

A ``token_families`` row per grant (the lock that revocation and issuance of one grant
share), ``authorization_codes.revoked_at`` (a replay seen while the code was being
redeemed), and a foreign key from each token to its family.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "3c0de4e91ace"
down_revision = "3b5e551015e2"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "token_families",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.client_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    # Every existing family gets its row; a family whose tokens are all revoked was revoked.
    op.execute(
        "INSERT INTO token_families (id, client_id, user_id, created_at, revoked_at) "
        "SELECT family_id, MIN(client_id), MIN(user_id), MIN(issued_at), "
        "CASE WHEN COUNT(revoked_at) = COUNT(*) THEN MAX(revoked_at) END "
        "FROM tokens GROUP BY family_id"
    )
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.BigInteger(), nullable=True))

    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_tokens_family", "token_families", ["family_id"], ["id"], ondelete="CASCADE"
        )


def downgrade():
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_constraint("fk_tokens_family", type_="foreignkey")

    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")

    op.drop_table("token_families")
