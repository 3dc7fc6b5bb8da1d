"""Pushed authorization requests (RFC 9126) and DPoP (RFC 9449)

Revision ID: 4f9126000004
Revises: 4e8628000003
Create Date: 2026-12-01 07:10:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "4f9126000004"
down_revision = "4e8628000003"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
