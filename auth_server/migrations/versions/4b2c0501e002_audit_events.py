"""audit events

Revision ID: 4b2c0501e002
Revises: 4a1acc0c0001
Create Date: 2026-12-01 05:00:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "4b2c0501e002"
down_revision = "4a1acc0c0001"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
