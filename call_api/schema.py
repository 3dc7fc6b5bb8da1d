"""Schema management for the calls database (run by ``call-api init-db``, never at import)."""

from __future__ import annotations

from . import models  # noqa: F401  (register the tables)
from .extensions import db


def upgrade() -> None:
    """Create missing tables (idempotent)."""
    db.create_all()


def drop() -> None:
    db.drop_all()
