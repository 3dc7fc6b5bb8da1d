"""Running a service's Alembic migrations (Flask-Migrate) from code."""

from __future__ import annotations

import contextlib
import io

import flask_migrate


def upgrade(directory: str) -> None:
    """Create or upgrade the schema to the newest migration (idempotent)."""
    flask_migrate.upgrade(directory=directory)


def offline_sql(directory: str, revision: str = "head") -> str:
    """The DDL of the migrations (Alembic offline mode), as the original's SQL dump."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        flask_migrate.upgrade(directory=directory, revision=revision, sql=True)
    return out.getvalue()
