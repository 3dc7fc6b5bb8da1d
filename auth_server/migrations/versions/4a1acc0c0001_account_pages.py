"""account pages

Revision ID: 4a1acc0c0001
Revises: 3e40cf33d0e4
Create Date: 2026-12-01 05:00:00

The account page shows when each app the user allowed was last used
(``consents.last_used_at``), and revoking an app there may end its live calls: an
``end_calls`` entry of the revocation feed names its client (``revocations.client_id``).
Both columns are nullable: plain ADD COLUMN, no table rebuild on SQLite (which would drop
the revocations table's AUTOINCREMENT).
"""

import sqlalchemy as sa
from alembic import op

revision = "4a1acc0c0001"
down_revision = "3e40cf33d0e4"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("consents", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("revocations", sa.Column("client_id", sa.String(length=64), nullable=True))


def downgrade():
    # SQLite drops a column in place (3.35+); batch mode would rebuild the table and lose
    # the revocations table's AUTOINCREMENT.
    op.drop_column("revocations", "client_id")
    op.drop_column("consents", "last_used_at")
