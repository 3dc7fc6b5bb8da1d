"""audit events

Revision ID: 7c4d0a0d1e04
Revises: 7b3ca11e0003
Create Date: 2026-12-01 05:00:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "7c4d0a0d1e04"
down_revision = "7b3ca11e0003"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
