"""revocation feed

Revision ID: 3e40cf33d0e4
Revises: 3c0de4e91ace
Create Date: 2026-12-01 02:20:00

"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

# revision identifiers, used by Alembic.
revision = "3e40cf33d0e4"
down_revision = "3c0de4e91ace"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
