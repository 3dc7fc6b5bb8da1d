"""web sessions

Revision ID: 7b3ca11e0003
Revises: 6a1f0c2d7e11
Create Date: 2026-12-01 05:00:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "7b3ca11e0003"
down_revision = "6a1f0c2d7e11"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
