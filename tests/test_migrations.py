"""Migrations are the schema: sql/*.sql are their offline DDL, and upgrading an empty
PostgreSQL database to head leaves no difference from the models."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.conftest import _PG, create_pg_database, drop_pg_database

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {
    "auth_server": ("sql/auth.sql", "AUTH"),
    "call_api": ("sql/calls.sql", "CALL"),
}


def _app(service: str, url: str, tmp_path: Path):
    if service == "auth_server":
        from auth_server import create_app

        return create_app(
            {
                "SQLALCHEMY_DATABASE_URI": url,
                "SECRET_KEY": "x",
                "AUTH_KEYS_DIR": str(tmp_path / "keys"),
            }
        )
    from call_api import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": url})


@pytest.mark.parametrize("service", SERVICES)
def test_sql_dump_matches_migrations(service: str, tmp_path: Path) -> None:
    """`make sql` output is committed: regenerate it when a migration changes."""
    dump, _ = SERVICES[service]
    app = _app(service, "postgresql+psycopg2://clickcall@db/clickcall", tmp_path)
    schema = __import__(f"{service}.schema", fromlist=["sql"])
    with app.app_context():
        generated = schema.sql()
    assert "CREATE TABLE" in generated
    assert generated == (ROOT / dump).read_text(), f"{dump} is stale: run `make sql`"


@pytest.mark.postgres
@pytest.mark.parametrize("service", SERVICES)
def test_upgrade_empty_postgres_has_no_pending_changes(service: str, tmp_path: Path) -> None:
    if not _PG:
        pytest.skip("PostgreSQL is not reachable")
    name = f"clickcall_migrations_{service}"
    url = create_pg_database(name)
    try:
        app = _app(service, url, tmp_path)
        schema = __import__(f"{service}.schema", fromlist=["upgrade"])
        with app.app_context():
            schema.upgrade()
            schema.upgrade()  # idempotent
            db = app.extensions["sqlalchemy"]
            with db.engine.connect() as conn:
                diff = compare_metadata(
                    MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata
                )
                tables = set(sa.inspect(conn).get_table_names())
            db.engine.dispose()
        assert diff == []
        assert "alembic_version" in tables
    finally:
        drop_pg_database(name)
