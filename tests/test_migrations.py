"""Migrations are the schema: sql/*.sql are their offline DDL, and upgrading an empty
PostgreSQL database to head leaves no difference from the models."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
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


OLD_REVISION = "529cd8ba0348"  # the call API's schema before the call lifecycle
STARTED = datetime(2026, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)
# The calls the original schema could hold: (token_call, status, end_reason, seconds ended
# after the start) and the state each must have after the upgrade.
OLD_CALLS = [
    ("live-call", "ongoing", None, None, "in-progress"),
    ("hung-up-call", "ended", "hangup", 42, "completed"),
    ("admin-ended-call", "ended", "admin", 7, "canceled"),
    ("expired-call", "ended", "expired", 14400, "expired"),
]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_lifecycle_migration_maps_old_calls(backend: str, tmp_path: Path) -> None:
    """A database holding calls made under the original schema upgrades to head with each
    call in the matching state: ongoing → in-progress (answered when it started, so its
    duration still counts from started_at), hangup → completed, admin → canceled, expired →
    expired; every other column is kept, and the calls read back through the call rules."""
    from flask_migrate import upgrade

    from call_api import MIGRATIONS
    from call_api.calls import as_dict
    from call_api.models import Call

    if backend == "sqlite":
        url, name = f"sqlite:///{tmp_path}/old-calls.db", None
    else:
        if not _PG:
            pytest.skip("PostgreSQL is not reachable")
        name = f"clickcall_migrations_lifecycle_{os.getpid()}"
        url = create_pg_database(name)
    try:
        app = _app("call_api", url, tmp_path)
        with app.app_context():
            db = app.extensions["sqlalchemy"]
            upgrade(directory=MIGRATIONS, revision=OLD_REVISION)
            old = sa.MetaData()
            old.reflect(bind=db.engine, only=["call_users", "calls"])
            assert "state" not in old.tables["calls"].c
            with db.engine.begin() as conn:
                conn.execute(
                    old.tables["call_users"].insert(),
                    [{"subject": "u-1", "created_at": STARTED, "updated_at": STARTED}],
                )
                conn.execute(
                    old.tables["calls"].insert(),
                    [
                        {
                            "token_call": token,
                            "subject": "u-1",
                            "client_id": "app-1",
                            "number": "+14155550123",
                            "status": status,
                            "started_at": STARTED,
                            "ended_at": None
                            if after is None
                            else STARTED + timedelta(seconds=after),
                            "end_reason": reason,
                        }
                        for token, status, reason, after, _ in OLD_CALLS
                    ],
                )

            upgrade(directory=MIGRATIONS)
            calls = {c.token_call: c for c in db.session.scalars(sa.select(Call))}
            assert {t: (c.status, c.state, c.end_reason) for t, c in calls.items()} == {
                token: (status, state, reason) for token, status, reason, _, state in OLD_CALLS
            }
            for token, _status, _reason, after, _state in OLD_CALLS:
                call = calls[token]
                assert call.started_at == STARTED
                assert call.answered_at == STARTED, token
                assert (call.ringing_at, call.lease_expires_at, call.claims) == (None, None, 0)
                assert as_dict(call)["duration"] == after
            db.session.remove()
            db.engine.dispose()
    finally:
        if name is not None:
            drop_pg_database(name)
