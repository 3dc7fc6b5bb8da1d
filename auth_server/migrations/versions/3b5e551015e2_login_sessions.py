"""server-side login sessions and device cookies

Revision ID: 3b5e551015e2
Revises: 3a10e5c0a1e1
Create Date: 2026-12-01 02:20:00

The ``login_sessions`` table (auth_server/sessions.py). Device cookies need no table: they
are signed, and Flask-Limiter counts their attempts.

Usernames are now stored normalised (``accounts.normalise_username``: NFKC, case-folded,
whitespace collapsed). Existing rows are normalised here when their normalised form is free;
a row whose normalised form is taken by another user keeps its exact name, which still
signs in as typed. The downgrade does not restore the original case.
"""

import unicodedata

import sqlalchemy as sa
from alembic import context, op

# revision identifiers, used by Alembic.
revision = "3b5e551015e2"
down_revision = "3a10e5c0a1e1"
branch_labels = None
depends_on = None

MAX_USERNAME = 150


def _normalise(username):
    # A frozen copy of accounts.normalise_username as of this revision.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())
    return " ".join(folded.split())


def _normalise_usernames():
    users = sa.table("users", sa.column("id", sa.String), sa.column("username", sa.String))
    conn = op.get_bind()
    rows = conn.execute(sa.select(users.c.id, users.c.username).order_by(users.c.id)).all()
    taken = {username for _, username in rows}
    for user_id, username in rows:
        normalised = _normalise(username)
        if normalised == username or normalised in taken or len(normalised) > MAX_USERNAME:
            continue
        conn.execute(users.update().where(users.c.id == user_id).values(username=normalised))
        taken.discard(username)
        taken.add(normalised)


def upgrade():
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", sa.BigInteger(), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("end_reason", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_login_sessions_user", ["user_id"], unique=False)
    if not context.is_offline_mode():  # an offline script (`make sql`) is for new databases
        _normalise_usernames()


def downgrade():
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_login_sessions_user")
    op.drop_table("login_sessions")
