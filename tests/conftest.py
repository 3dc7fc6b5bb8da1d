"""Shared fixtures: every database-backed test runs on SQLite and on PostgreSQL.

PostgreSQL is used when reachable (``TEST_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/postgres``) and is mandatory when ``CI=true``.
Each pytest run creates its own databases, builds the schema once, and empties the
tables after every test.

Fixtures build on each other: ``auth_app`` → ``user`` / ``web_client`` → ``flow`` (runs
authorize → login → consent → token) → ``user_token``; ``call_app`` trusts the auth
app's signing key through ``CALL_PUBLIC_KEY_FILE``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shared.db import normalise_url  # noqa: E402

PG_ADMIN_URL = normalise_url(
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_REDIRECT = "http://127.0.0.1:8888/test"
ISSUER = "http://127.0.0.1:8888"
AUDIENCE = "http://127.0.0.1:8889"
# Werkzeug's scrypt costs ~0.1 s per user created and per sign-in: the suite hashes with one
# PBKDF2 round instead (``AUTH_PASSWORD_HASH_METHOD``), except in tests marked
# ``real_password_hash`` and in tests/auth_server/test_password_hash.py.
TEST_PASSWORD_HASH_METHOD = "pbkdf2:sha256:1"


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


_PG = postgres_available()
if IN_CI and not _PG:
    raise RuntimeError(f"CI=true but PostgreSQL is not reachable at {PG_ADMIN_URL}")

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

# `make test` spreads the tests over pytest-xdist workers (`-n … --dist loadgroup`). The
# tests under these paths run together on one worker, in order, because they share
# something that is costly to build per worker or exists only once: the fault suite's
# throwaway PostgreSQL cluster (and its timing-sensitive loads), the browser modules'
# Chromium and the pages' running stack (tests/e2e/stack.py), the quick-start module's
# `make run` on the fixed ports 8888-8890. The call-lifecycle fault tests get a group (and so
# a cluster) of their own: they inject no database fault, and their minute-long receiver
# outage would otherwise hold up the rest of the fault suite. First match wins.
# Everything else is per worker already (temp dirs, databases, free ports).
XDIST_GROUPS = {
    "tests/faults/test_webhook_faults.py": "lifecycle_faults",
    "tests/faults/test_dialer_faults.py": "lifecycle_faults",
    "tests/faults/": "faults",
    "tests/e2e/test_browser.py": "browser",
    "tests/e2e/test_journeys.py": "browser",
    "tests/e2e/test_pages_a11y.py": "browser",
    "tests/e2e/test_quick_start.py": "ports_8888_8889",
    "tests/e2e/test_oauth4webapi.py": "oauth4webapi",  # its servers are module-scoped
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``, grouped by ``XDIST_GROUPS`` as well as ``xdist_group`` marks.

    With pytest >= 9.2, pytest-xdist 3.8's own loadgroup ignores the marks (it renames the
    node ids, which pytest no longer allows: pytest-dev/pytest-xdist#1386), so the groups are
    decided here, in the controller, from the test's path."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class PathGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            for prefix, group in XDIST_GROUPS.items():
                if path.startswith(prefix):
                    return group
            return super()._split_scope(nodeid)

    return PathGroupScheduling(config, log)


def pg_url(dbname: str) -> str:
    return (
        sa.engine.make_url(PG_ADMIN_URL).set(database=dbname).render_as_string(hide_password=False)
    )


def create_pg_database(name: str) -> str:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return pg_url(name)


def drop_pg_database(name: str) -> None:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@dataclass
class Databases:
    backend: str
    auth_url: str
    calls_url: str


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clickcall")


@pytest.fixture(scope="session")
def keys_dir(session_dir: Path) -> Path:
    from shared.keys import KeyStore

    path = session_dir / "keys"
    KeyStore(path).add("RS256")
    return path


@pytest.fixture(scope="session")
def public_key_file(keys_dir: Path) -> Path:
    from shared.keys import KeyStore, public_pem

    key = KeyStore(keys_dir).current()
    assert key is not None
    path = keys_dir.parent / "public.pem"
    path.write_bytes(public_pem(key.private_key))
    return path


_created_dbs: dict[str, Databases] = {}


def _databases(backend: str, session_dir: Path) -> Databases:
    if backend in _created_dbs:
        return _created_dbs[backend]
    if backend == "sqlite":
        dbs = Databases(
            "sqlite",
            f"sqlite:///{session_dir}/auth.db",
            f"sqlite:///{session_dir}/calls.db",
        )
    else:
        if not _PG:
            pytest.skip("PostgreSQL is not reachable (set CI=true to make this an error)")
        tag = f"{os.getpid()}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
        dbs = Databases(
            "postgresql",
            create_pg_database(f"clickcall_test_auth_{tag}"),
            create_pg_database(f"clickcall_test_calls_{tag}"),
        )
    _created_dbs[backend] = dbs
    return dbs


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for dbs in _created_dbs.values():
        if dbs.backend == "postgresql":
            for url in (dbs.auth_url, dbs.calls_url):
                try:
                    drop_pg_database(sa.engine.make_url(url).database or "")
                except Exception:
                    pass


@pytest.fixture(params=BACKENDS)
def databases(request: pytest.FixtureRequest, session_dir: Path) -> Databases:
    return _databases(request.param, session_dir)


# The serial sequences that were used since the last reset, restarted at 1 like
# ``TRUNCATE … RESTART IDENTITY`` would.
_RESTART_USED_SEQUENCES = sa.text(
    "SELECT setval(format('%I.%I', schemaname, sequencename), 1, false) "
    "FROM pg_sequences WHERE schemaname = current_schema() AND last_value IS NOT NULL"
)


def _empty_tables(app: Flask) -> None:
    """Delete every row, children first. On PostgreSQL ``DELETE`` of a test's few rows takes
    about 1 ms where ``TRUNCATE`` of every table takes 40-80 ms (it makes new files for each
    table and index, and waits for an exclusive lock)."""
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        db.session.remove()
        engine = db.engine
        with engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())
            if engine.dialect.name == "postgresql":
                conn.execute(_RESTART_USED_SEQUENCES)


_schemas_ready: set[tuple[str, str]] = set()


def _prepare(app: Flask, service: str, url: str) -> None:
    key = (service, url)
    if key not in _schemas_ready:
        with app.app_context():
            if service == "auth":
                from auth_server.schema import upgrade
            else:
                from call_api.schema import upgrade
            upgrade()
        _schemas_ready.add(key)
    _empty_tables(app)


def auth_config(databases: Databases, keys_dir: Path, **extra: Any) -> dict[str, Any]:
    from shared.db import engine_options

    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "SQLALCHEMY_DATABASE_URI": databases.auth_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(databases.auth_url),
        "AUTH_KEYS_DIR": str(keys_dir),
        "AUTH_ISSUER": ISSUER,
        "CALL_AUDIENCE": AUDIENCE,
        "RATELIMIT_ENABLED": False,
        "AUTH_PASSWORD_HASH_METHOD": TEST_PASSWORD_HASH_METHOD,
        **extra,
    }


def call_config(databases: Databases, public_key_file: Path, **extra: Any) -> dict[str, Any]:
    from shared.db import engine_options

    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": databases.calls_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(databases.calls_url),
        "CALL_PUBLIC_KEY_FILE": str(public_key_file),
        "AUTH_ISSUER": ISSUER,
        "CALL_AUDIENCE": AUDIENCE,
        # No auth server listens at ISSUER: in-process call APIs do not poll its revocation
        # feed (tests/security/test_revocation_reaches_call_api.py turns it on).
        "CALL_REVOCATION_POLL_INTERVAL": 0,
        **extra,
    }


# The ``auth_app`` and ``call_app`` of a worker are built once per configuration and reused
# by the following tests (their tables emptied by ``_prepare`` as before): building one costs
# 35-45 ms (mostly compiling ~100 URL rules) plus new database connections, and most tests
# build both. A test that changed its app's settings or swapped an extension gets a fresh
# app next time: the app is reused only if its config and extensions are as they were built.
_apps: dict[tuple[str, str], tuple[Flask, dict[str, Any], dict[str, int]]] = {}


def _dispose(app: Flask) -> None:
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        app.extensions["sqlalchemy"].engine.dispose()


def _reusable_app(service: str, config: dict[str, Any], build: Callable[..., Flask]) -> Flask:
    key = (service, repr(sorted(config.items())))
    cached = _apps.pop(key, None)
    if cached is not None:
        app, settings, extensions = cached
        try:
            same = dict(app.config) == settings
        except Exception:  # a value that cannot be compared: build anew
            same = False
        if same and {name: id(ext) for name, ext in app.extensions.items()} == extensions:
            _apps[key] = cached
            return app
        _dispose(app)
    app = build(config)
    try:
        settings = copy.deepcopy(dict(app.config))
    except Exception:  # a value that cannot be copied: never reuse this app
        return app
    _apps[key] = (app, settings, {name: id(ext) for name, ext in app.extensions.items()})
    return app


def _release(app: Flask) -> None:
    """After a test: the app's connections go back to its pool (or close, if not reused)."""
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
    if not any(cached[0] is app for cached in _apps.values()):
        _dispose(app)


@pytest.fixture
def auth_app(
    request: pytest.FixtureRequest, databases: Databases, keys_dir: Path
) -> Iterator[Flask]:
    from auth_server import create_app

    extra = {}
    if request.node.get_closest_marker("real_password_hash"):
        from auth_server.config import DEFAULT_PASSWORD_HASH_METHOD

        extra["AUTH_PASSWORD_HASH_METHOD"] = DEFAULT_PASSWORD_HASH_METHOD
    app = _reusable_app("auth", auth_config(databases, keys_dir, **extra), create_app)
    _prepare(app, "auth", databases.auth_url)
    # Flask-Limiter's on/off switch lives on the one module-level limiter and is set by the
    # last app built (an earlier test's app_with(RATELIMIT_ENABLED=True)): a reused app takes
    # its own setting back.
    from auth_server.extensions import limiter

    limiter.enabled = bool(app.config["RATELIMIT_ENABLED"])
    yield app
    _release(app)


@pytest.fixture
def cli(auth_app: Flask, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Run ``auth-server ARGS…`` against ``auth_app`` (``input`` is standard input)."""
    from auth_server.cli import main

    # FlaskGroup sets FLASK_RUN_FROM_CLI in os.environ; undo it after the test.
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    runner = auth_app.test_cli_runner()

    def invoke(*args: str, input: str | None = None) -> Any:
        return runner.invoke(main, list(args), input=input)

    return invoke


@pytest.fixture
def app_with(databases: Databases, keys_dir: Path) -> Iterator[Callable[..., Flask]]:
    """Build dedicated auth apps with extra settings (instead of ``auth_app``), disposed of
    after the test."""
    from auth_server import create_app

    apps: list[Flask] = []

    def build(**extra: Any) -> Flask:
        app = create_app(auth_config(databases, keys_dir, **extra))
        _prepare(app, "auth", databases.auth_url)
        apps.append(app)
        return app

    yield build
    for app in apps:
        with app.app_context():
            app.extensions["sqlalchemy"].session.remove()
            app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def call_app(databases: Databases, public_key_file: Path) -> Iterator[Flask]:
    from call_api import create_app

    app = _reusable_app("calls", call_config(databases, public_key_file), create_app)
    _prepare(app, "calls", databases.calls_url)
    yield app
    _release(app)


@pytest.fixture
def client(auth_app: Flask) -> FlaskClient:
    return auth_app.test_client()


@pytest.fixture
def api(call_app: Flask) -> FlaskClient:
    return call_app.test_client()


@dataclass
class UserInfo:
    id: str
    username: str
    password: str


@dataclass
class ClientInfo:
    client_id: str
    client_secret: str | None
    redirect_uris: list[str] = field(default_factory=list)

    def basic(self) -> dict[str, str]:
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def make_user(
    app: Flask, username: str | None = None, password: str = "correct horse", role: str = "user"
) -> UserInfo:
    from auth_server.accounts import create_user

    username = username or f"user-{uuid.uuid4().hex[:8]}"
    with app.app_context():
        user = create_user(username, password, role)
        return UserInfo(user.id, user.username, password)


def make_client(
    app: Flask,
    name: str = "Test app",
    redirect_uris: list[str] | None = None,
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token"),
    response_types: tuple[str, ...] | None = None,
    scope: str = "call",
    public: bool = False,
    allow_admin_for_users: bool = False,
) -> ClientInfo:
    from auth_server.clients import create_client

    uris = [TEST_REDIRECT] if redirect_uris is None else redirect_uris
    with app.app_context():
        reg = create_client(
            name=name,
            redirect_uris=uris,
            grant_types=grant_types,
            response_types=response_types,
            scope=scope,
            public=public,
            allow_admin_for_users=allow_admin_for_users,
        )
        return ClientInfo(reg.client.client_id, reg.client_secret, uris)


@pytest.fixture
def user(auth_app: Flask) -> UserInfo:
    return make_user(auth_app, "alice", "alice-password")


@pytest.fixture
def web_client(auth_app: Flask) -> ClientInfo:
    return make_client(
        auth_app,
        "Web app",
        grant_types=("authorization_code", "implicit", "refresh_token"),
        response_types=("code", "token"),
    )


@pytest.fixture
def admin_client(auth_app: Flask) -> ClientInfo:
    return make_client(
        auth_app,
        "Admin",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="admin",
    )


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def fragment_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).fragment).items()}


class Flow:
    """Runs authorize → login → consent (→ token) through the HTTP interface."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def csrf(self) -> str:
        with self.client.session_transaction() as sess:
            token = sess.get("csrf")
        if token is None:
            self.client.get("/auth/login", headers={"Accept": "application/json"})
            with self.client.session_transaction() as sess:
                token = sess["csrf"]
        return str(token)

    def login(self, user: UserInfo, **params: str) -> Any:
        data = {
            **params,
            "username": user.username,
            "password": user.password,
            "csrf_token": self.csrf(),
        }
        return self.client.post("/auth/login", data=data)

    def authorize(
        self,
        user: UserInfo,
        client: ClientInfo,
        response_type: str = "code",
        scope: str = "call",
        state: str = "st4te",
        pkce: bool = True,
        consent: bool = True,
        **extra: str,
    ) -> dict[str, str]:
        """Returns the redirect's query (code) or fragment (token) parameters."""
        params = {
            "response_type": response_type,
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uris[0],
            "scope": scope,
            "state": state,
        }
        self.verifier = None
        if pkce and response_type == "code":
            self.verifier, challenge = pkce_pair()
            params.update(code_challenge=challenge, code_challenge_method="S256")
        params.update(extra)
        r = self.client.get("/oauth/auth?" + urlencode(params))
        if r.status_code == 302 and r.headers["Location"].startswith("/auth/login"):
            r = self.login(user, **params)
        if r.status_code == 303 and r.headers["Location"].startswith("/auth/grant"):
            r = self.client.post(
                "/auth/grant",
                data={**params, "grant": "true" if consent else "false", "csrf_token": self.csrf()},
            )
        assert r.status_code in (302, 303), (r.status_code, r.get_data(as_text=True))
        location = r.headers["Location"]
        return fragment_of(location) if response_type == "token" else query_of(location)

    def token(self, user: UserInfo, client: ClientInfo, scope: str = "call") -> dict[str, Any]:
        result = self.authorize(user, client, scope=scope)
        data = {
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": client.redirect_uris[0],
            "code_verifier": self.verifier or "",
        }
        headers: dict[str, str] = {}
        if client.client_secret:
            headers = client.basic()
        else:
            data["client_id"] = client.client_id
        r = self.client.post("/oauth/token", data=data, headers=headers)
        assert r.status_code == 200, r.get_data(as_text=True)
        return dict(r.json)  # type: ignore[arg-type]


@pytest.fixture
def flow(client: FlaskClient) -> Flow:
    return Flow(client)


@pytest.fixture
def user_token(flow: Flow, user: UserInfo, web_client: ClientInfo) -> str:
    return str(flow.token(user, web_client)["access_token"])


@pytest.fixture
def admin_token(client: FlaskClient, admin_client: ClientInfo) -> str:
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        headers=admin_client.basic(),
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    return str(r.json["access_token"])  # type: ignore[index]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
