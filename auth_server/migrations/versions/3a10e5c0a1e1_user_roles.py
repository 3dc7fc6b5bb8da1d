"""user roles

Revision ID: 3a10e5c0a1e1
Revises: 2f6681e031c6
Create Date: 2026-12-01 02:20:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

# revision identifiers, used by Alembic.
revision = "3a10e5c0a1e1"
down_revision = "2f6681e031c6"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
