"""Schema management: Alembic migrations (Flask-Migrate), run by `init-db`, never at import."""

from __future__ import annotations

import flask_migrate

from . import (
    MIGRATIONS,
    models,  # noqa: F401  (register the tables for autogenerate)
)


def upgrade() -> None:
    """Create or upgrade the schema to the newest migration (idempotent)."""
    flask_migrate.upgrade(directory=MIGRATIONS)


def sql(revision: str = "head") -> str:
    """The PostgreSQL DDL of the migrations (Alembic offline mode), as the original's dump."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        flask_migrate.upgrade(directory=MIGRATIONS, revision=revision, sql=True)
    return out.getvalue()
