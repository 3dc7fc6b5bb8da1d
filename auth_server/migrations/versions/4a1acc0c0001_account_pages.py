"""account pages

Revision ID: 4a1acc0c0001
Revises: 3e40cf33d0e4
Create Date: 2026-12-01 05:00:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "4a1acc0c0001"
down_revision = "3e40cf33d0e4"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
