"""Device authorization grant (RFC 8628): device codes

Revision ID: 4e8628000003
Revises: 4d7591000002
Create Date: 2026-12-01 07:10:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "4e8628000003"
down_revision = "4d7591000002"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
