"""Dynamic client registration (RFC 7591/7592): initial access tokens

Revision ID: 4d7591000002
Revises: 4c0e1d000001
Create Date: 2026-12-01 07:10:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "4d7591000002"
down_revision = "4c0e1d000001"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
