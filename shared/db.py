"""Database engine settings shared by both services.

SQLite is the zero-setup default; PostgreSQL is production. On SQLite every transaction
starts with ``BEGIN IMMEDIATE`` so that concurrent writers (several threads or processes)
serialise on the database lock instead of racing; on PostgreSQL the services use row
locks. Connections are pinged before use so both services recover by themselves after
a database restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url


def normalise_url(url: str) -> str:
    """Accept ``postgres://`` (Heroku style); make a SQLite path absolute and its folder exist.

    A relative SQLite path (``sqlite:///var/auth.db``) means relative to the working
    directory, as a person reads it. Left relative, Flask-SQLAlchemy would resolve it
    against the app's ``instance/`` folder instead, whose ``var/`` nobody creates.
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        # SQLAlchemy 2.1 defaults to psycopg 3; this project ships psycopg2.
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not parsed.database.startswith("file:"):
            path = Path(parsed.database).expanduser().absolute()
            path.parent.mkdir(parents=True, exist_ok=True)
            url = parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


def engine_options(url: str, statement_timeout_ms: int = 5000) -> dict[str, Any]:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": 5,
        "max_overflow": 10,
        "pool_timeout": 5,
        "pool_recycle": 1800,
    }
    if backend == "postgresql":
        options["connect_args"] = {
            "connect_timeout": 5,
            # A silently dropped link (no RST) must fail too, not hang a worker: TCP
            # keepalives and a send timeout above the statement timeout.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": statement_timeout_ms + 5000,
            "options": (
                f"-c statement_timeout={statement_timeout_ms} "
                f"-c lock_timeout={statement_timeout_ms} "
                f"-c idle_in_transaction_session_timeout={max(statement_timeout_ms * 6, 30000)}"
            ),
        }
    return options


def configure_engine(engine: Engine) -> None:
    """Install the SQLite transaction behaviour described in the module docstring."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def settle_database_options(config: Any, overrides: Any) -> None:
    """After a test or caller overrides the URL, derive the engine options from it."""
    if "SQLALCHEMY_DATABASE_URI" not in overrides:
        return
    url = normalise_url(str(config["SQLALCHEMY_DATABASE_URI"]))
    config["SQLALCHEMY_DATABASE_URI"] = url
    if "SQLALCHEMY_ENGINE_OPTIONS" not in overrides:
        config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(
            url, int(config.get("DB_STATEMENT_TIMEOUT_MS", 5000))
        )
