"""audit events: every operator-console action on the call API (who, what, when, from where)

Revision ID: 7c4d0a0d1e04
Revises: 7b3ca11e0003
Create Date: 2026-12-01 05:00:00

"""

import sqlalchemy as sa
from alembic import op

revision = "7c4d0a0d1e04"
down_revision = "7b3ca11e0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("actor_name", sa.String(length=150), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_action", ["action"], unique=False)
        batch_op.create_index("ix_audit_events_actor_name", ["actor_name"], unique=False)
        batch_op.create_index("ix_audit_events_at", ["at"], unique=False)


def downgrade():
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_at")
        batch_op.drop_index("ix_audit_events_actor_name")
        batch_op.drop_index("ix_audit_events_action")
    op.drop_table("audit_events")
