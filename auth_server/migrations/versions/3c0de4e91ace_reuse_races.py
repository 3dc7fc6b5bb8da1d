"""consistent reuse detection under concurrency

Revision ID: 3c0de4e91ace
Revises: 3b5e551015e2
Create Date: 2026-12-01 02:20:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

# revision identifiers, used by Alembic.
revision = "3c0de4e91ace"
down_revision = "3b5e551015e2"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
