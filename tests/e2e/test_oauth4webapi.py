"""Every flow driven by a strict third-party client: panva's oauth4webapi (npm), from the
Node script ``tests/oauth4webapi/flows.mjs``, against the real servers under gunicorn.

One auth server and one call API for the whole module (PostgreSQL when reachable, which
``CI=true`` makes mandatory; SQLite otherwise), with their own signing key; users and
clients are seeded in-process on the same database. Each test runs ``node flows.mjs FLOW``
with a JSON configuration on standard input and asserts on the JSON it prints: what
oauth4webapi accepted after its own checks (issuer, state, RFC 9207 ``iss``, ID token claims
and nonce, RFC 9068 access tokens, DPoP proofs and bindings, …).

Needs Node 20 and ``npm ci --prefix tests/oauth4webapi`` (``make install`` runs it). Without
them the tests are skipped, except with ``CI=true``, where they fail. ``OAUTH4WEBAPI_SHOW=1``
(with ``-s``) prints each flow's JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import (
    _PG,
    IN_CI,
    ClientInfo,
    Databases,
    UserInfo,
    auth_config,
    call_config,
    create_pg_database,
    drop_pg_database,
    make_client,
)
from tests.e2e.servers import Server, auth_env, call_env, free_port, run_service

pytestmark = pytest.mark.slow

SCRIPT_DIR = Path(__file__).resolve().parents[1] / "oauth4webapi"
SCRIPT = SCRIPT_DIR / "flows.mjs"
NODE = shutil.which("node")
FLOW_TIMEOUT = 30
NUMBER = "+14155550123"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
FEATURE_ENDPOINTS = {
    "authorization_endpoint": "/oauth/auth",
    "token_endpoint": "/oauth/token",
    "revocation_endpoint": "/oauth/revoke",
    "introspection_endpoint": "/oauth/introspect",
    "jwks_uri": "/.well-known/jwks.json",
    "userinfo_endpoint": "/oauth/userinfo",
    "end_session_endpoint": "/oauth/logout",
    "registration_endpoint": "/oauth/register",
    "device_authorization_endpoint": "/oauth/device_authorization",
    "pushed_authorization_request_endpoint": "/oauth/par",
}


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true; `make install` runs npm ci)")
    pytest.skip(reason)


@dataclass
class Servers:
    issuer: str
    call_api: str
    audience: str
    auth_app: Flask
    user: UserInfo

    @property
    def redirect_uri(self) -> str:
        return f"{self.issuer}/test"

    def client(self, name: str, **options: Any) -> ClientInfo:
        options.setdefault("redirect_uris", [self.redirect_uri])
        return make_client(self.auth_app, name, **options)

    def config(self, client: ClientInfo | None = None, **extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "issuer": self.issuer,
            "call_api": self.call_api,
            "audience": self.audience,
            "redirect_uri": self.redirect_uri,
            "user": {
                "username": self.user.username,
                "password": self.user.password,
                "sub": self.user.id,
            },
        }
        if client is not None:
            config["client"] = {"client_id": client.client_id}
            if client.client_secret:
                config["client"]["client_secret"] = client.client_secret
        return {**config, **extra}

    def registration_token(self) -> str:
        """An initial access token, minted as an operator would (``auth-server
        registration-tokens create --json``)."""
        from auth_server.cli import main

        previous = os.environ.get("FLASK_RUN_FROM_CLI")
        try:
            result = self.auth_app.test_cli_runner().invoke(
                main, ["registration-tokens", "create", "--max-uses", "1", "--json"]
            )
        finally:
            if previous is None:
                os.environ.pop("FLASK_RUN_FROM_CLI", None)
            else:
                os.environ["FLASK_RUN_FROM_CLI"] = previous
        assert result.exit_code == 0, result.output
        return str(json.loads(result.output)["token"])


def _databases(folder: Path, stop: ExitStack) -> Databases:
    if _PG:
        tag = f"{os.getpid()}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
        names = (f"clickcall_o4w_auth_{tag}", f"clickcall_o4w_calls_{tag}")
        with ThreadPoolExecutor(2) as pool:
            urls = list(pool.map(create_pg_database, names))

        def drop() -> None:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(drop_pg_database, names))

        stop.callback(drop)
        return Databases("postgresql", *urls)
    # Outside CI without PostgreSQL (CI=true makes PostgreSQL mandatory: tests/conftest.py).
    return Databases("sqlite", f"sqlite:///{folder}/auth.db", f"sqlite:///{folder}/calls.db")


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    if NODE is None:
        _unavailable("node is not installed (Node 20 runs tests/oauth4webapi/flows.mjs)")
    if not (SCRIPT_DIR / "node_modules" / "oauth4webapi").is_dir():
        _unavailable("oauth4webapi is not installed: npm ci --prefix tests/oauth4webapi")
    from auth_server import create_app as create_auth
    from call_api import create_app as create_calls
    from shared.keys import KeyStore, public_pem

    with ExitStack() as stop:
        folder = Path(tempfile.mkdtemp(prefix="clickcall-o4w-"))
        stop.callback(shutil.rmtree, folder, True)
        keys_dir = folder / "keys"
        key = KeyStore(keys_dir).add("RS256")
        public_key = folder / "public.pem"
        public_key.write_bytes(public_pem(key.private_key))
        dbs = _databases(folder, stop)
        auth_port, calls_port = free_port(), free_port()
        issuer = f"http://127.0.0.1:{auth_port}"
        call_url = f"http://127.0.0.1:{calls_port}"
        audience = call_url

        auth_app = create_auth(
            auth_config(dbs, keys_dir, AUTH_ISSUER=issuer, CALL_AUDIENCE=audience)
        )
        with auth_app.app_context():
            from auth_server.schema import upgrade

            upgrade()

        def dispose_auth() -> None:
            with auth_app.app_context():
                auth_app.extensions["sqlalchemy"].session.remove()
                auth_app.extensions["sqlalchemy"].engine.dispose()

        stop.callback(dispose_auth)
        call_app = create_calls(call_config(dbs, public_key, CALL_AUDIENCE=audience))
        with call_app.app_context():
            from call_api.schema import upgrade as upgrade_calls

            upgrade_calls()
            call_app.extensions["sqlalchemy"].session.remove()
            call_app.extensions["sqlalchemy"].engine.dispose()
        with auth_app.app_context():
            from auth_server.accounts import create_user

            person = create_user(
                "olivia",
                "olivia-password",
                name="Olivia Oakley",
                email="olivia@example.com",
                email_verified=True,
            )
            user = UserInfo(person.id, person.username, "olivia-password")

        auth, calls = _start_together(
            stop,
            (
                "auth_server",
                {**auth_env(dbs.auth_url, str(keys_dir), issuer, audience), **AUTH_SETTINGS},
                auth_port,
            ),
            (
                "call_api",
                {
                    **call_env(
                        dbs.calls_url, issuer, audience, jwks_url=f"{issuer}/.well-known/jwks.json"
                    ),
                    "CALL_DPOP_NONCE": "true",
                },
                calls_port,
            ),
        )
        assert (auth.url, calls.url) == (issuer, call_url)
        yield Servers(issuer, call_url, audience, auth_app, user)


def _start_together(stop: ExitStack, *services: tuple[str, dict[str, str], int]) -> list[Server]:
    """Start the services under gunicorn at the same time (each takes a second or two to
    import), and stop them at the same time too: SIGTERM to all, then the waits."""
    managers = [
        run_service(name, env, port=port, workers=1, threads=4) for name, env, port in services
    ]
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
    started: list[Server] = []
    failure: BaseException | None = None
    for manager, future in zip(managers, futures, strict=True):
        try:
            started.append(future.result())
        except BaseException as exc:  # the others are stopped by ``stop``
            failure = failure or exc
            continue
        stop.push(manager.__exit__)

    def terminate_all() -> None:
        for server in started:
            server.process.terminate()

    stop.callback(terminate_all)
    if failure is not None:
        raise failure
    return started


# Settings of the auth server for these flows: the device flow's polling interval short, and
# DPoP server nonces on (as on the call API) so that oauth4webapi's nonce handling is used.
AUTH_SETTINGS = {"AUTH_DEVICE_POLL_INTERVAL": "1", "AUTH_DPOP_NONCE": "true"}


def run_flow(flow: str, config: dict[str, Any]) -> dict[str, Any]:
    """``node flows.mjs FLOW`` with ``config`` on stdin: its JSON result (fails on error)."""
    assert NODE is not None
    proc = subprocess.run(
        [NODE, str(SCRIPT), flow],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        timeout=FLOW_TIMEOUT,
        cwd=SCRIPT_DIR,
    )
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"{flow}: no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode != 0:
        pytest.fail(f"{flow} failed (exit {proc.returncode}):\n{json.dumps(result, indent=2)}")
    if os.environ.get("OAUTH4WEBAPI_SHOW"):
        print(json.dumps(result, indent=1))
    return dict(result)


def expect_access_token(
    claims: dict[str, Any], servers: Servers, client_id: str, scope: str, sub: str | None = None
) -> None:
    assert {k: claims[k] for k in ("iss", "aud", "sub", "client_id", "scope")} == {
        "iss": servers.issuer,
        "aud": servers.audience,
        "sub": sub or servers.user.id,
        "client_id": client_id,
        "scope": scope,
    }


BEARER_CALL = {
    "token_type": "bearer",
    "scope": "call",
    "expires_in": 3600,
    "has_refresh_token": True,
    "has_id_token": False,
}


# --- discovery ---------------------------------------------------------------------------


def test_discovery_rfc8414_and_openid_configuration(servers: Servers) -> None:
    """Both documents, fetched and checked (issuer) by oauth4webapi: the same metadata."""
    out = run_flow("discovery", servers.config())
    meta, oidc = out["oauth"], out["oidc"]
    assert meta == oidc
    assert meta["issuer"] == servers.issuer
    # Every feature the flows below use is advertised, at the endpoint they use.
    assert {k: meta[k] for k in FEATURE_ENDPOINTS} == {
        k: f"{servers.issuer}{path}" for k, path in FEATURE_ENDPOINTS.items()
    }
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert {"private_key_jwt", "client_secret_jwt"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )
    assert DEVICE_GRANT in meta["grant_types_supported"]
    assert "ES256" in meta["dpop_signing_alg_values_supported"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert meta["subject_types_supported"] == ["public"]
    assert {"openid", "profile", "email"} <= set(meta["scopes_supported"])


# --- authorization code, client credentials, revocation ----------------------------------


def test_code_flow_with_pkce_state_and_refresh(servers: Servers) -> None:
    web = servers.client("oauth4webapi web app")
    out = run_flow("code", servers.config(web))
    assert out["pages"] == ["/auth/login", "/auth/grant", "/test"]
    assert (out["callback_params"], out["callback_iss"]) == (
        ["code", "iss", "state"],
        servers.issuer,
    )
    assert out["tokens"] == BEARER_CALL
    expect_access_token(out["access_token_claims"], servers, web.client_id, "call")
    assert out["call_api"] == {"status": 200, "body": {"calls": []}}
    assert out["refreshed"] == BEARER_CALL
    assert out["refresh_token_rotated"] is True
    expect_access_token(out["refreshed_claims"], servers, web.client_id, "call")
    assert out["refreshed_claims"]["jti"] != out["access_token_claims"]["jti"]


def test_client_credentials_and_the_call_api(servers: Servers) -> None:
    robot = servers.client(
        "oauth4webapi robot",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="admin",
    )
    out = run_flow("client-credentials", servers.config(robot, scope="admin"))
    assert out["tokens"] == {
        "token_type": "bearer",
        "scope": "admin",
        "expires_in": 3600,
        "has_refresh_token": False,
        "has_id_token": False,
    }
    expect_access_token(
        out["access_token_claims"], servers, robot.client_id, "admin", sub=robot.client_id
    )
    assert out["call_api"]["status"] == 200
    assert out["call_api"]["body"]["calls"] == []


def test_revocation_and_introspection(servers: Servers) -> None:
    web = servers.client("oauth4webapi revoking app")
    out = run_flow("revocation", servers.config(web))
    assert out["active_before"] is True
    intro = out["introspection_before"]
    assert {k: intro[k] for k in ("active", "client_id", "sub", "scope", "token_type")} == {
        "active": True,
        "client_id": web.client_id,
        "sub": servers.user.id,
        "scope": "call",
        "token_type": "Bearer",
    }
    # Revoking the refresh token revokes its grant: the access token too (RFC 7009 §2.1).
    assert out["active_after_revoking_refresh_token"] is False
    assert out["refresh_after_revocation_error"] == "invalid_grant"


# --- OpenID Connect ----------------------------------------------------------------------


def test_openid_connect_code_flow_id_token_and_userinfo(servers: Servers) -> None:
    scope = "openid profile email call"
    rp = servers.client("oauth4webapi relying party", scope=scope)
    out = run_flow("oidc", servers.config(rp, scope=scope))
    assert out["iss_parameter_supported"] is True
    assert out["callback_iss"] == servers.issuer
    assert out["callback_params"] == ["code", "iss", "state"]
    assert out["tokens"] == {**BEARER_CALL, "scope": scope, "has_id_token": True}
    claims = out["id_token_claims"]
    assert {k: claims[k] for k in ("iss", "sub", "aud")} == {
        "iss": servers.issuer,
        "sub": servers.user.id,
        "aud": rp.client_id,
    }
    assert out["id_token_nonce_matches"] is True
    assert isinstance(claims["auth_time"], int)
    assert out["id_token"] == {
        "alg": "RS256",
        "kid": out["id_token"]["kid"],
        "at_hash_checked": True,
    }
    assert out["userinfo"] == {
        "sub": servers.user.id,
        "preferred_username": "olivia",
        "name": "Olivia Oakley",
        "email": "olivia@example.com",
        "email_verified": True,
    }
    assert out["refreshed"]["token_type"] == "bearer"


# --- dynamic registration and JWT client authentication ----------------------------------


def test_dynamic_registration_then_code_flow(servers: Servers) -> None:
    out = run_flow(
        "registration", servers.config(initial_access_token=servers.registration_token())
    )
    reg = out["registered"]
    assert reg["client_secret"] == "(set)"
    assert reg["registration_access_token"] == "(set)"
    assert reg["redirect_uris"] == [servers.redirect_uri]
    assert reg["token_endpoint_auth_method"] == "client_secret_basic"
    assert out["tokens"] == BEARER_CALL
    expect_access_token(out["access_token_claims"], servers, reg["client_id"], "call")


def _jwt_client_checks(out: dict[str, Any], servers: Servers, method: str) -> None:
    assert out["registered_auth_method"] == method
    assert out["tokens"] == BEARER_CALL
    claims = out["access_token_claims"]
    assert out["introspection"]["active"] is True
    assert out["introspection"]["client_id"] == claims["client_id"]
    assert out["refreshed"] == BEARER_CALL
    assert out["refresh_after_revocation_error"] == "invalid_grant"
    expect_access_token(claims, servers, claims["client_id"], "call")


def test_private_key_jwt(servers: Servers) -> None:
    config = servers.config(initial_access_token=servers.registration_token())
    _jwt_client_checks(run_flow("private-key-jwt", config), servers, "private_key_jwt")


def test_client_secret_jwt(servers: Servers) -> None:
    config = servers.config(initial_access_token=servers.registration_token())
    _jwt_client_checks(run_flow("client-secret-jwt", config), servers, "client_secret_jwt")


# --- device flow -------------------------------------------------------------------------


def test_device_flow(servers: Servers) -> None:
    tv = servers.client(
        "oauth4webapi desk phone",
        redirect_uris=[],
        grant_types=(DEVICE_GRANT, "refresh_token"),
        response_types=(),
    )
    out = run_flow("device", servers.config(tv))
    assert out["device"]["verification_uri"] == f"{servers.issuer}/device"
    assert out["device"]["interval"] == 1
    assert out["approval"]["consent"] == {
        "client_name": "oauth4webapi desk phone",
        "scope": "call",
        "username": servers.user.username,
    }
    assert out["approval"]["outcome"] == "approved"
    assert out["first_poll_error"] == "authorization_pending"  # polled before the approval
    assert out["approval"]["steps"] == [
        "302 /auth/login",
        "200 GET /auth/login",
        "200 POST /auth/login",
        "200 GET /device",
        "200 POST /device (code)",
        "200 POST /device (approve)",
    ]
    assert out["poll_errors"] == []  # the first poll after the interval gets the tokens
    assert out["tokens"] == BEARER_CALL
    expect_access_token(out["access_token_claims"], servers, tv.client_id, "call")
    assert out["call_api"] == {"status": 200, "body": {"calls": []}}


# --- PAR and DPoP ------------------------------------------------------------------------


def test_pushed_authorization_request(servers: Servers) -> None:
    web = servers.client("oauth4webapi PAR app")
    out = run_flow("par", servers.config(web))
    assert out["par"]["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert out["par"]["expires_in"] == 60
    assert out["tokens"] == BEARER_CALL
    expect_access_token(out["access_token_claims"], servers, web.client_id, "call")
    assert out["pages"] == ["/auth/login", "/auth/grant", "/test"]
    assert out["callback_params"] == ["code", "iss", "state"]
    # Single use: the same request_uri again is an error page (no redirect to the client).
    assert (out["reuse_status"], out["reuse_location"]) == (400, None)


def test_dpop_bound_tokens_at_the_call_api(servers: Servers) -> None:
    spa = servers.client(f"oauth4webapi SPA {uuid.uuid4().hex[:4]}", public=True)
    out = run_flow("dpop", servers.config(spa, number=NUMBER, par=True))
    dpop_call = {**BEARER_CALL, "token_type": "dpop"}
    assert out["tokens"] == dpop_call
    claims = out["access_token_claims"]
    expect_access_token(claims, servers, spa.client_id, "call")
    assert claims["cnf"] == {"jkt": out["jkt"]}
    assert out["call_api_get"]["status"] == 200
    assert out["call_api_post"]["status"] == 201
    assert out["as_bearer"]["status"] == 401
    assert out["as_bearer"]["www_authenticate"].startswith("DPoP")
    assert out["other_key_call_api"] == 401
    assert out["other_key_refresh_error"] == "invalid_grant"
    assert out["refreshed"] == dpop_call
    assert out["refreshed_claims"]["cnf"] == {"jkt": out["jkt"]}
    assert out["call_api_after_refresh"]["status"] == 200
    assert out["call_api_after_refresh"]["body"]["calls"] == [out["call_api_post"]["body"]]
    # Both servers asked for a DPoP nonce (use_dpop_nonce), which oauth4webapi then sent.
    assert out["dpop_nonce_retries"][0] == "par"
    assert "call_api" in out["dpop_nonce_retries"]
