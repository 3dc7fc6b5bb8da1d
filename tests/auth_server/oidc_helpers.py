"""OpenID Connect test helpers: an OIDC client and user, the authorization round trip, and
ID-token verification with joserfc (independent of the PyJWT that signs access tokens)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from werkzeug.test import TestResponse

from tests.auth_server.helpers import JSON, ensure_csrf, exchange, pkce_params, sign_in
from tests.conftest import ISSUER, TEST_REDIRECT, ClientInfo, UserInfo, fragment_of, query_of

LOGGED_OUT = "https://rp.example/logged-out"
OIDC_SCOPE = "openid profile email call"


def make_oidc_client(
    app: Flask,
    name: str = "OIDC app",
    scope: str = "call openid profile email",
    post_logout: tuple[str, ...] = (LOGGED_OUT,),
) -> ClientInfo:
    from auth_server.clients import create_client

    with app.app_context():
        reg = create_client(
            name=name,
            redirect_uris=[TEST_REDIRECT],
            grant_types=["authorization_code", "implicit", "refresh_token"],
            response_types=["code", "id_token", "id_token token"],
            scope=scope,
            post_logout_redirect_uris=list(post_logout),
        )
        return ClientInfo(reg.client.client_id, reg.client_secret, [TEST_REDIRECT])


def set_profile(app: Flask, user: UserInfo, name: str, email: str, verified: bool) -> None:
    from auth_server import accounts

    with app.app_context():
        accounts.set_profile(accounts.find_user(user.username), name, email, verified)


def sign_in_age(app: Flask, user: UserInfo, seconds_ago: int) -> int:
    """Pretend the user's live sessions signed in ``seconds_ago``; that time (auth_time)."""
    import time

    from sqlalchemy import update

    from auth_server.extensions import db
    from auth_server.models import LoginSession

    at = int(time.time()) - seconds_ago
    with app.app_context():
        db.session.execute(
            update(LoginSession)
            .where(LoginSession.user_id == user.id)
            .values(created_at=at, last_seen_at=at + seconds_ago)
        )
        db.session.commit()
    return at


def grant(client: FlaskClient, params: dict[str, str], decision: str = "true") -> TestResponse:
    return client.post(
        "/auth/grant", data={**params, "grant": decision, "csrf_token": ensure_csrf(client)}
    )


def authorize(
    client: FlaskClient, user: UserInfo, params: dict[str, str]
) -> tuple[TestResponse, dict[str, str]]:
    """authorize → (login) → (consent); the final redirect and its parameters (query or
    fragment, whichever holds them)."""
    r = client.get("/oauth/auth?" + urlencode(params))
    if r.status_code == 302 and r.headers["Location"].startswith("/auth/login"):
        r = sign_in(client, user, **params)
    if r.status_code == 303 and r.headers["Location"].startswith("/auth/grant"):
        r = grant(client, params)
    assert r.status_code in (302, 303), (r.status_code, r.get_data(as_text=True))
    return r, redirect_params(r.headers["Location"])


def redirect_params(location: str) -> dict[str, str]:
    assert location.startswith(TEST_REDIRECT), location
    return fragment_of(location) if "#" in location else query_of(location)


def code_tokens(
    client: FlaskClient, user: UserInfo, app_client: ClientInfo, **extra: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The code flow with ``extra`` parameters (scope, nonce, …): the token response and the
    authorization response's parameters."""
    verifier, params = pkce_params(app_client, **{"scope": OIDC_SCOPE, **extra})
    _, result = authorize(client, user, params)
    assert result["iss"] == ISSUER, result
    r = exchange(client, app_client, result["code"], verifier)
    assert r.status_code == 200, r.get_data(as_text=True)
    return dict(r.json), result  # type: ignore[arg-type]


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def half_hash(value: str) -> str:
    """at_hash / c_hash for RS256: base64url of the left half of the SHA-256."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def verify_id_token(
    client: FlaskClient, token: str, audience: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify an ID token with joserfc against the published JWKS: signature, ``iss``,
    ``aud``, ``exp``; its header and claims."""
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json)
    decoded = jose_jwt.decode(token, keys, algorithms=["RS256"])
    jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    ).validate(decoded.claims)
    return dict(decoded.header), dict(decoded.claims)


def userinfo(client: FlaskClient, token: str, method: str = "GET") -> TestResponse:
    if method == "GET":
        return client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {token}"})
    return client.post("/oauth/userinfo", data={"access_token": token})


def logout(client: FlaskClient, method: str = "GET", **params: str) -> TestResponse:
    if method == "GET":
        return client.get("/oauth/logout?" + urlencode(params), headers=JSON)
    return client.post("/oauth/logout", data=params, headers=JSON)


def signed_in(client: FlaskClient) -> bool:
    """Whether the browser still has a live login session (the account page answers)."""
    return client.get("/account").status_code == 200
