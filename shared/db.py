"""Database engine settings shared by both services.

SQLite is the zero-setup default; PostgreSQL is production. On SQLite every transaction
starts with ``BEGIN IMMEDIATE`` so that concurrent writers (several threads or processes)
serialise on the database lock instead of racing; on PostgreSQL the services use row
locks. A pooled connection that sat idle for more than ``PING_AFTER_IDLE`` seconds is
pinged before use, and any disconnect seen by a statement makes SQLAlchemy replace every
pooled connection older than it, so both services recover by themselves after a database
restart without paying a ping round trip on every request under load (docs/PERFORMANCE.md,
"Issue 14: hot paths").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine, make_url

# A connection back in the pool for longer than this is pinged at its next checkout: long
# enough that a busy pool never pings (each connection is reused within milliseconds), short
# enough that connections idle while the database restarted are checked before use.
PING_AFTER_IDLE = 1.0


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
    """Install the ping after idleness, or on SQLite the transaction behaviour, described in
    the module docstring."""
    if engine.dialect.name != "sqlite":
        ping_after_idle(engine)
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


def ping_after_idle(engine: Engine, idle: float = PING_AFTER_IDLE) -> None:
    """Ping (``SELECT 1``) a pooled connection at checkout only if it sat idle in the pool
    for more than ``idle`` seconds; one that fails the ping is replaced by a new connection
    (``DisconnectionError``: the pool reconnects and tries again).

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: one round trip per transaction,
    a quarter of a read's (docs/PERFORMANCE.md). Under load connections never sit idle that
    long, so the ping is skipped; a connection that dies in use anyway (a database restart in
    the middle of traffic) fails its statement as a disconnect, which makes SQLAlchemy
    invalidate every connection pooled before it, so the next requests reconnect.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("checked_in_at", None)
        record.info["pinged"] = since is not None and time.monotonic() - since > idle
        if record.info["pinged"]:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except engine.dialect.loaded_dbapi.Error as error:
                raise exc.DisconnectionError(f"ping after idleness failed: {error}") from error


@contextmanager
def autocommit_read(engine: Engine) -> Iterator[Connection]:
    """A connection for reads outside any transaction: on PostgreSQL each statement is its
    own transaction (psycopg2's autocommit), so a read is one round trip instead of three
    (``BEGIN``, the statement, ``ROLLBACK``). Only for statements that write nothing and
    need no snapshot shared with another statement. SQLite reads as before.

    psycopg2's flag is set directly: SQLAlchemy's ``isolation_level="AUTOCOMMIT"`` would
    send a ``SET default_transaction_isolation`` when the connection goes back to the pool.
    """
    with engine.connect() as conn:
        if engine.dialect.name != "postgresql":
            yield conn
            return
        raw: Any = conn.connection.dbapi_connection
        raw.autocommit = True
        try:
            yield conn
        finally:
            if not raw.closed:
                raw.autocommit = False


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
