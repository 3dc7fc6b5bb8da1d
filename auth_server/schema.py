"""Schema management: Alembic migrations, run by `init-db`, never at import or startup."""

from __future__ import annotations

from shared import migrations

from . import (
    MIGRATIONS,
    models,  # noqa: F401  (register the tables for autogenerate)
)


def upgrade() -> None:
    migrations.upgrade(MIGRATIONS)


def sql() -> str:
    return migrations.offline_sql(MIGRATIONS)
