"""call lifecycle: states, dialer leases, the event outbox, webhook endpoints and attempts

Existing calls get a state from what they were: an ongoing session is ``in-progress``
(answered when it started, so ``duration`` keeps counting from ``started_at``); an ended one
is ``completed`` (hang-up), ``canceled`` (an admin force-end) or ``expired``.

Revision ID: 6a1f0c2d7e11
Revises: 529cd8ba0348
Create Date: 2026-12-01 04:50:00

"""

import sqlalchemy as sa
from alembic import op

revision = "6a1f0c2d7e11"
down_revision = "529cd8ba0348"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("state", sa.String(length=12), nullable=False, server_default="queued")
        )
        batch_op.add_column(sa.Column("ringing_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("time_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("talk_deadline", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ring_timeout", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("status_callback", sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column("dialer_client", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("dialer_id", sa.String(length=128), nullable=True))
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("claims", sa.Integer(), nullable=False, server_default="0"))
        batch_op.alter_column(
            "end_reason",
            existing_type=sa.String(length=10),
            type_=sa.String(length=16),
            existing_nullable=True,
        )
        batch_op.create_index("ix_calls_state_lease", ["state", "lease_expires_at"], unique=False)
    op.execute(
        "UPDATE calls SET state = 'in-progress', answered_at = started_at WHERE status = 'ongoing'"
    )
    op.execute(
        "UPDATE calls SET answered_at = started_at, state = CASE end_reason "
        "WHEN 'admin' THEN 'canceled' WHEN 'expired' THEN 'expired' ELSE 'completed' END "
        "WHERE status = 'ended'"
    )

    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("dialer_event", sa.String(length=16), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("delivery", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    with op.batch_alter_table("call_events", schema=None) as batch_op:
        batch_op.create_index("ix_call_events_call", ["call_id", "id"], unique=False)
        batch_op.create_index("ix_call_events_due", ["delivery", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_call_events_pending",
            ["id"],
            unique=False,
            postgresql_where=sa.text("delivery = 'pending'"),
            sqlite_where=sa.text("delivery = 'pending'"),
        )
        batch_op.create_index(
            "ix_call_events_call_pending",
            ["call_id", "id"],
            unique=False,
            postgresql_where=sa.text("delivery = 'pending'"),
            sqlite_where=sa.text("delivery = 'pending'"),
        )

    op.create_table(
        "webhook_endpoints",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=True),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["call_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_attempts_event", ["event_id", "id"], unique=False)


def downgrade():
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_attempts_event")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_endpoints")
    with op.batch_alter_table("call_events", schema=None) as batch_op:
        batch_op.drop_index("ix_call_events_call_pending")
        batch_op.drop_index("ix_call_events_pending")
        batch_op.drop_index("ix_call_events_due")
        batch_op.drop_index("ix_call_events_call")
    op.drop_table("call_events")
    op.execute("UPDATE calls SET end_reason = 'hangup' WHERE length(end_reason) > 10")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_state_lease")
        batch_op.alter_column(
            "end_reason",
            existing_type=sa.String(length=16),
            type_=sa.String(length=10),
            existing_nullable=True,
        )
        for column in (
            "claims",
            "lease_expires_at",
            "dialer_id",
            "dialer_client",
            "status_callback",
            "ring_timeout",
            "talk_deadline",
            "time_limit",
            "answered_at",
            "ringing_at",
            "state",
        ):
            batch_op.drop_column(column)
