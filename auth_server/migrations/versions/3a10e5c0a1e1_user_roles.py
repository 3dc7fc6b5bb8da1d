"""user roles

Revision ID: 3a10e5c0a1e1
Revises: 2f6681e031c6
Create Date: 2026-12-01 02:20:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "3a10e5c0a1e1"
down_revision = "2f6681e031c6"
branch_labels = None
depends_on = None


def upgrade():
    # Existing users become ordinary users; an operator promotes with `users set-role`.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=20), server_default="user", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("role")
