"""audit events

Revision ID: 4b2c0501e002
Revises: 4a1acc0c0001
Create Date: 2026-12-01 05:00:00

The ``audit_events`` table: one row per operator-console action or refused attempt (who,
what, on what, when, from where, the outcome, details without secrets). Columns as in
``shared.audit.AuditEventMixin``.
"""

import sqlalchemy as sa
from alembic import op

revision = "4b2c0501e002"
down_revision = "4a1acc0c0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
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
        batch_op.create_index("ix_audit_events_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_events_actor_name", ["actor_name"], unique=False)
        batch_op.create_index("ix_audit_events_action", ["action"], unique=False)


def downgrade():
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_action")
        batch_op.drop_index("ix_audit_events_actor_name")
        batch_op.drop_index("ix_audit_events_at")
    op.drop_table("audit_events")
