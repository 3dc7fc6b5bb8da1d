"""server-side login sessions and device cookies

Revision ID: 3b5e551015e2
Revises: 3a10e5c0a1e1
Create Date: 2026-12-01 02:20:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

# revision identifiers, used by Alembic.
revision = "3b5e551015e2"
down_revision = "3a10e5c0a1e1"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
