"""Fixtures for the fault-injection suite.

Every test here runs the services as real gunicorn processes against a throwaway
PostgreSQL cluster that this suite creates (``initdb``), starts, stops, crashes and finally
removes — never the shared server. Without the PostgreSQL server binaries the whole folder
is skipped (an error when ``CI=true``).

Scale: the default is the short CI version (each test well under 20 s);
``FAULTS_SCALE=full`` (``make faults``) runs longer loads and outages. The soak test
(marker ``soak``) only runs when ``SOAK_SECONDS`` is set (``make soak``).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import (
    AUDIENCE,
    IN_CI,
    ISSUER,
    ClientInfo,
    Databases,
    Flow,
    UserInfo,
    auth_config,
    call_config,
    make_client,
    make_user,
)
from tests.e2e.servers import Server, auth_env, call_env, run_service
from tests.faults.load import REPORT, SCALE
from tests.faults.pgcluster import PgCluster, find_pg_bin, unavailable_reason

N_USERS = 4


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: fault injection against a throwaway PostgreSQL cluster"
    )
    config.addinivalue_line(
        "markers", "soak: long mixed-load run, skipped unless SOAK_SECONDS is set (make soak)"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section(f"fault-injection summary (FAULTS_SCALE={SCALE})")
        for line in REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    reason = unavailable_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true but no throwaway PostgreSQL cluster is possible: {reason}")
        pytest.skip(reason)
    bindir = find_pg_bin()
    assert bindir is not None
    cluster = PgCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class FaultEnv:
    cluster: PgCluster
    dbs: Databases
    keys_dir: Path
    public_key_file: Path
    auth_app: Flask
    users: list[UserInfo]
    web_client: ClientInfo
    admin_client: ClientInfo
    calls_engine: sa.Engine
    _tokens: list[str] = field(default_factory=list)
    _minted_at: float = 0.0

    def mint(
        self, user: UserInfo, client: ClientInfo | None = None, app: Flask | None = None
    ) -> str:
        """A real user access token (authorize → login → consent → token), in-process."""
        flow = Flow((app or self.auth_app).test_client())
        return str(flow.token(user, client or self.web_client)["access_token"])

    def tokens(self) -> list[str]:
        """One token per seeded user, reused for half an hour (they live an hour)."""
        if not self._tokens or time.monotonic() - self._minted_at > 1800:
            self._tokens = self.tokens_fresh()
            self._minted_at = time.monotonic()
        return list(self._tokens)

    def tokens_fresh(self) -> list[str]:
        return [self.mint(u) for u in self.users]

    def ensure_up(self) -> None:
        if not self.cluster.running:
            self.cluster.start()
        self.cluster.wait_ready()

    # -- services -----------------------------------------------------------------------
    def call_env(self, jwks_url: str | None = None, **extra: str) -> dict[str, str]:
        env = call_env(
            self.dbs.calls_url,
            ISSUER,
            AUDIENCE,
            jwks_url=jwks_url,
            public_key_file=None if jwks_url else str(self.public_key_file),
        )
        # The faults test availability and consistency, not the per-user limit.
        env["CALL_MAX_ONGOING_DEFAULT"] = "1000000"
        env.update(extra)
        return env

    @contextmanager
    def call_api(
        self, workers: int = 2, threads: int = 4, jwks_url: str | None = None, **extra: str
    ) -> Iterator[Server]:
        with run_service(
            "call_api", self.call_env(jwks_url, **extra), workers=workers, threads=threads
        ) as server:
            yield server

    @contextmanager
    def auth_server(
        self, port: int | None = None, keys_dir: Path | None = None, workers: int = 1, **extra: str
    ) -> Iterator[Server]:
        env = auth_env(self.dbs.auth_url, str(keys_dir or self.keys_dir), ISSUER, AUDIENCE)
        env.update(extra)
        with run_service("auth_server", env, port=port, workers=workers, threads=4) as server:
            yield server


@contextmanager
def services(*managers: AbstractContextManager[Server]) -> Iterator[list[Server]]:
    """Start several ``run_service`` processes in parallel (each boot is ~2 s of CPU) and
    stop them together: SIGTERM to all first, then each one's own wait."""
    with ExitStack() as stack:
        started: list[Server | None] = [None] * len(managers)
        errors: list[BaseException] = []

        def enter(i: int, manager: AbstractContextManager[Server]) -> None:
            try:
                started[i] = manager.__enter__()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [
            threading.Thread(target=enter, args=(i, m), daemon=True) for i, m in enumerate(managers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for manager, server in zip(managers, started, strict=True):
            if server is not None:
                stack.push(manager.__exit__)
        if errors:
            raise errors[0]
        servers = [s for s in started if s is not None]
        try:
            yield servers
        finally:
            for server in servers:
                if server.process.poll() is None:
                    server.process.terminate()


def _create_databases(cluster: PgCluster) -> Databases:
    admin = sa.create_engine(cluster.url().replace("postgresql://", "postgresql+psycopg2://"))
    with admin.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        for name in ("clickcall_auth", "clickcall_calls"):
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return Databases("postgresql", cluster.url("clickcall_auth"), cluster.url("clickcall_calls"))


@pytest.fixture(scope="session")
def fault_env(
    pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultEnv]:
    from auth_server import create_app as create_auth
    from call_api import create_app as create_call
    from shared.keys import KeyStore, public_pem

    # Our own signing key (other tests may rotate the session-wide one).
    keys_dir = tmp_path_factory.mktemp("fault-keys") / "keys"
    key = KeyStore(keys_dir).add("RS256")
    public_key_file = keys_dir.parent / "public.pem"
    public_key_file.write_bytes(public_pem(key.private_key))
    dbs = _create_databases(pg_cluster)
    auth_app = create_auth(auth_config(dbs, keys_dir))
    with auth_app.app_context():
        from auth_server.schema import upgrade as auth_upgrade

        auth_upgrade()
    call_app = create_call(call_config(dbs, public_key_file))
    with call_app.app_context():
        from call_api.schema import upgrade as call_upgrade

        call_upgrade()
        call_app.extensions["sqlalchemy"].engine.dispose()

    users = [make_user(auth_app, f"fault-user-{i}", f"fault-password-{i}") for i in range(N_USERS)]
    web_client = make_client(auth_app, "Fault web app")
    admin_client = make_client(
        auth_app,
        "Fault admin",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="admin",
    )
    engine = sa.create_engine(
        dbs.calls_url.replace("postgresql://", "postgresql+psycopg2://"), pool_pre_ping=True
    )
    env = FaultEnv(
        pg_cluster,
        dbs,
        keys_dir,
        public_key_file,
        auth_app,
        users,
        web_client,
        admin_client,
        engine,
    )
    yield env
    engine.dispose()
    with auth_app.app_context():
        auth_app.extensions["sqlalchemy"].session.remove()
        auth_app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def env(fault_env: FaultEnv) -> Iterator[FaultEnv]:
    """The session's environment with the cluster up and the call tables empty."""
    fault_env.ensure_up()
    with fault_env.calls_engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE calls, call_users RESTART IDENTITY CASCADE"))
    yield fault_env
    fault_env.ensure_up()


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="clickcall-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- the call lifecycle: webhooks and dialers under faults ---------------------------------

# The call APIs of the lifecycle tests (tests/faults/test_webhook_faults.py and
# test_dialer_faults.py) run for the whole session: booting them is most of a short test's
# time. What differs between tests is in the processes each test starts (the worker's
# CALL_WEBHOOK_* settings, the simulators') and in what it registers.
LIFECYCLE_SETTINGS = {
    "CALL_MAX_ONGOING_DEFAULT": "3",  # the load test's limit; the others stay below it
    "CALL_DIALER_LEASE_SECONDS": "2",  # a dead dialer's calls are settled within seconds
    "CALL_WEBHOOK_POLL_INTERVAL": "0.2",
}
KEPT_TABLES = ("alembic_version", "webhook_endpoints")  # each test rotates the secret


@dataclass
class Stack:
    """A call API under gunicorn on one database, with the settings its worker and dialer
    processes share (``env``) and an engine to read its tables."""

    backend: str
    server: Server
    env: dict[str, str]
    engine: sa.Engine

    @property
    def url(self) -> str:
        return self.server.url

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params).all())

    def empty(self) -> None:
        """Delete every row (children first) but the webhook endpoints."""
        tables = sa.MetaData()
        tables.reflect(self.engine)
        with self.engine.begin() as conn:
            for table in reversed(tables.sorted_tables):
                if table.name not in KEPT_TABLES:
                    conn.execute(table.delete())


@dataclass
class LifecycleEnv:
    """The fault env plus a real auth server whose issuer the call APIs trust (so that
    ``call-api simulator`` processes get their dialer tokens from its token endpoint), and
    a call API on PostgreSQL (the fault cluster, 2 workers) and one on SQLite (a file).

    Users, the web app and the admin client are the fault env's; tokens are minted
    in-process by an auth app with the real server's issuer (same database and key)."""

    env: FaultEnv
    issuer: str
    auth_server: Server
    auth_app: Flask
    dialer: ClientInfo
    stacks: dict[str, Stack]
    _user_tokens: list[str] = field(default_factory=list)

    def user_tokens(self) -> list[str]:
        if not self._user_tokens:
            self._user_tokens = [self.env.mint(u, app=self.auth_app) for u in self.env.users]
        return list(self._user_tokens)

    def _client_token(self, client: ClientInfo, scope: str) -> str:
        r = self.auth_app.test_client().post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            headers=client.basic(),
        )
        assert r.status_code == 200, r.get_data(as_text=True)
        return str(r.get_json()["access_token"])

    def admin_token(self) -> str:
        return self._client_token(self.env.admin_client, "admin")

    def dialer_token(self) -> str:
        return self._client_token(self.dialer, "dialer")

    def simulator_env(self, stack: Stack, ring: float, talk: float) -> dict[str, str]:
        """What ``call-api simulator`` needs to dial for ``stack`` (with ``stack.env``)."""
        return {
            **stack.env,
            "DIALER_CLIENT_ID": self.dialer.client_id,
            "DIALER_CLIENT_SECRET": str(self.dialer.client_secret),
            "AUTH_ISSUER": self.issuer,
            "CALL_API_URL": stack.url,
            "SIMULATOR_RING_SECONDS": str(ring),
            "SIMULATOR_TALK_SECONDS": str(talk),
        }


def _sqlite_calls_db(folder: Path, public_key_file: Path) -> str:
    """A new SQLite calls database with the schema built."""
    from call_api import create_app as create_call
    from call_api.schema import upgrade

    url = f"sqlite:///{folder}/calls.db"
    app = create_call(call_config(Databases("sqlite", "", url), public_key_file))
    with app.app_context():
        upgrade()
        app.extensions["sqlalchemy"].engine.dispose()
    return url


@pytest.fixture(scope="session")
def lifecycle(
    fault_env: FaultEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LifecycleEnv]:
    from auth_server import create_app as create_auth
    from tests.e2e.servers import free_port

    fault_env.ensure_up()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    auth_app = create_auth(auth_config(fault_env.dbs, fault_env.keys_dir, AUTH_ISSUER=issuer))
    dialer = make_client(
        auth_app,
        "Fault dialer",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="dialer",
    )
    urls = {
        "postgresql": fault_env.dbs.calls_url,
        "sqlite": _sqlite_calls_db(tmp_path_factory.mktemp("lifecycle"), fault_env.public_key_file),
    }
    envs = {
        backend: fault_env.call_env(AUTH_ISSUER=issuer, CALL_DATABASE_URL=url, **LIFECYCLE_SETTINGS)
        for backend, url in urls.items()
    }
    sqlite_engine = sa.create_engine(urls["sqlite"], connect_args={"timeout": 30})
    try:
        with services(
            fault_env.auth_server(port=port, AUTH_ISSUER=issuer),
            run_service("call_api", envs["postgresql"], workers=2, threads=4),
            run_service("call_api", envs["sqlite"], workers=1, threads=4),
        ) as (auth_server, pg_api, sqlite_api):
            stacks = {
                "postgresql": Stack(
                    "postgresql", pg_api, envs["postgresql"], fault_env.calls_engine
                ),
                "sqlite": Stack("sqlite", sqlite_api, envs["sqlite"], sqlite_engine),
            }
            yield LifecycleEnv(fault_env, issuer, auth_server, auth_app, dialer, stacks)
    finally:
        sqlite_engine.dispose()
        with auth_app.app_context():
            auth_app.extensions["sqlalchemy"].session.remove()
            auth_app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def stacks(env: FaultEnv, lifecycle: LifecycleEnv) -> dict[str, Stack]:
    """The lifecycle call APIs with their tables empty (``env`` empties PostgreSQL's)."""
    lifecycle.stacks["sqlite"].empty()
    return lifecycle.stacks
