"""A third-party client against the real auth server (gunicorn), knowing only its discovery URL.

The client side uses stock libraries: requests-oauthlib for the code flow with PKCE,
Authlib's requests client for client_credentials, and jwcrypto (not PyJWT, which signed the
tokens) to verify them against the JWKS fetched over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from jwcrypto import jwk
from jwcrypto import jwt as jwcrypto_jwt
from requests_oauthlib import OAuth2Session

from tests.conftest import AUDIENCE, ClientInfo, make_client, make_user, pkce_pair
from tests.e2e.servers import auth_env, free_port, run_service

pytestmark = pytest.mark.slow

JSON = {"Accept": "application/json"}


@dataclass
class Setup:
    issuer: str
    discovery_url: str
    user_id: str
    web: ClientInfo
    machine: ClientInfo


@pytest.fixture
def setup(auth_app, databases, keys_dir) -> Iterator[Setup]:
    """Seed a user and two clients in-process, then serve the same database with gunicorn."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    user = make_user(auth_app, "erin", "erin-password")
    web = make_client(
        auth_app,
        "Third-party web app",
        redirect_uris=[f"{issuer}/test"],
        grant_types=("authorization_code", "refresh_token"),
    )
    machine = make_client(
        auth_app,
        "Third-party robot",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="admin",
    )
    env = auth_env(databases.auth_url, str(keys_dir), issuer, AUDIENCE)
    with run_service("auth_server", env, port=port) as server:
        assert server.url == issuer
        yield Setup(
            issuer, f"{issuer}/.well-known/oauth-authorization-server", user.id, web, machine
        )


def discover(url: str) -> dict:
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def verify_with_jwcrypto(metadata: dict, token: str) -> tuple[dict, dict]:
    """Verify ``token`` against the JWKS fetched from ``jwks_uri``; return (header, claims)."""
    r = requests.get(metadata["jwks_uri"], timeout=10)
    assert r.status_code == 200, r.text
    keyset = jwk.JWKSet.from_json(r.text)
    verified = jwcrypto_jwt.JWT(
        jwt=token,
        key=keyset,
        algs=["RS256"],
        check_claims={"iss": metadata["issuer"], "aud": AUDIENCE, "exp": None},
    )
    header = json.loads(verified.header)
    return header, json.loads(verified.claims)


def test_code_flow_with_pkce_through_discovery(setup, monkeypatch):
    """requests-oauthlib + a browser session: code with PKCE S256, token verified by jwcrypto."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback
    meta = discover(setup.discovery_url)
    assert meta["issuer"] == setup.issuer
    assert "S256" in meta["code_challenge_methods_supported"]

    verifier, challenge = pkce_pair()
    oauth = OAuth2Session(
        setup.web.client_id, redirect_uri=setup.web.redirect_uris[0], scope=["call"]
    )
    auth_url, state = oauth.authorization_url(
        meta["authorization_endpoint"], code_challenge=challenge, code_challenge_method="S256"
    )

    browser = requests.Session()
    r = browser.get(auth_url, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    login_url = urljoin(auth_url, r.headers["Location"])
    assert urlsplit(login_url).path == "/auth/login"

    r = browser.get(login_url, headers=JSON, timeout=10)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["client_name"] == "Third-party web app"
    assert (page["state"], page["code_challenge"]) == (state, challenge)
    oauth_params = {k: v for k, v in page.items() if k not in ("csrf_token", "client_name")}

    r = browser.post(
        urljoin(auth_url, "/auth/login"),
        allow_redirects=False,
        timeout=10,
        data={
            **oauth_params,
            "username": "erin",
            "password": "erin-password",
            "csrf_token": page["csrf_token"],
        },
    )
    assert r.status_code == 303, r.text
    grant_url = urljoin(auth_url, r.headers["Location"])
    assert urlsplit(grant_url).path == "/auth/grant"

    r = browser.get(grant_url, headers=JSON, timeout=10)
    assert r.status_code == 200, r.text
    consent = r.json()
    assert (consent["scope"], consent["username"]) == ("call", "erin")
    assert consent["csrf_token"] != page["csrf_token"]  # new session after login

    r = browser.post(
        urljoin(auth_url, "/auth/grant"),
        allow_redirects=False,
        timeout=10,
        data={**oauth_params, "grant": "true", "csrf_token": consent["csrf_token"]},
    )
    assert r.status_code == 302, r.text
    callback = r.headers["Location"]
    assert callback.startswith(setup.web.redirect_uris[0] + "?")
    assert set(parse_qs(urlsplit(callback).query)) == {"code", "state", "iss"}
    assert parse_qs(urlsplit(callback).query)["iss"] == [setup.issuer]  # RFC 9207

    token = oauth.fetch_token(
        meta["token_endpoint"],
        authorization_response=callback,
        client_secret=setup.web.client_secret,
        code_verifier=verifier,
    )
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == ["call"]
    assert token["refresh_token"]

    header, claims = verify_with_jwcrypto(meta, token["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert {k: claims[k] for k in ("iss", "sub", "aud", "client_id", "scope", "username")} == {
        "iss": setup.issuer,
        "sub": setup.user_id,
        "aud": AUDIENCE,
        "client_id": setup.web.client_id,
        "scope": "call",
        "username": "erin",
    }

    # The redirect target (the original's /test page) shows the code it received.
    r = browser.get(callback, headers=JSON, timeout=10)
    assert r.status_code == 200
    assert set(r.json()) == {"code", "state", "iss"}

    # The refresh token rotates through the same library.
    refreshed = oauth.refresh_token(
        meta["token_endpoint"], auth=(setup.web.client_id, setup.web.client_secret)
    )
    assert refreshed["refresh_token"] != token["refresh_token"]
    _, claims = verify_with_jwcrypto(meta, refreshed["access_token"])
    assert claims["sub"] == setup.user_id


def test_client_credentials_through_discovery_with_authlib(setup):
    """Authlib's requests client gets an admin token; jwcrypto verifies it via the JWKS."""
    meta = discover(setup.discovery_url)
    assert "client_credentials" in meta["grant_types_supported"]
    session = AuthlibSession(
        setup.machine.client_id,
        setup.machine.client_secret,
        scope="admin",
        token_endpoint_auth_method="client_secret_basic",
    )
    try:
        token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    finally:
        session.close()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "admin"
    assert "refresh_token" not in token

    header, claims = verify_with_jwcrypto(meta, token["access_token"])
    assert header["typ"] == "at+jwt"
    assert (claims["sub"], claims["client_id"], claims["scope"]) == (
        setup.machine.client_id,
        setup.machine.client_id,
        "admin",
    )
    assert "username" not in claims

    r = requests.post(
        meta["introspection_endpoint"],
        data={"token": token["access_token"]},
        auth=(setup.machine.client_id, setup.machine.client_secret),
        timeout=10,
    )
    assert r.status_code == 200
    assert (r.json()["active"], r.json()["sub"]) == (True, setup.machine.client_id)
