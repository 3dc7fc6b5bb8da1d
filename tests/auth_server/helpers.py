"""Small HTTP helpers shared by the auth-server tests (no fixtures here)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import AUDIENCE, ISSUER, ClientInfo, UserInfo, pkce_pair

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
NO_STORE = "no-store"


def auth_params(
    app_client: ClientInfo,
    response_type: str = "code",
    scope: str = "call",
    state: str = "st4te",
    **extra: str,
) -> dict[str, str]:
    """The query of an authorization request for ``app_client``'s first redirect URI."""
    params = {
        "response_type": response_type,
        "client_id": app_client.client_id,
        "redirect_uri": app_client.redirect_uris[0],
        "scope": scope,
        "state": state,
    }
    params.update(extra)
    return params


def pkce_params(app_client: ClientInfo, **extra: str) -> tuple[str, dict[str, str]]:
    """A code request with a fresh S256 challenge; returns (verifier, params)."""
    verifier, challenge = pkce_pair()
    return verifier, auth_params(
        app_client, code_challenge=challenge, code_challenge_method="S256", **extra
    )


def session_csrf(client: FlaskClient) -> str | None:
    with client.session_transaction() as sess:
        token = sess.get("csrf")
    return None if token is None else str(token)


def ensure_csrf(client: FlaskClient) -> str:
    token = session_csrf(client)
    if token is None:
        client.get("/auth/login", headers=JSON)
        token = session_csrf(client)
    assert token is not None
    return token


def sign_in(client: FlaskClient, user: UserInfo, **params: str) -> TestResponse:
    """POST the login form (with the session's CSRF token and any OAuth parameters)."""
    data = {
        **params,
        "username": user.username,
        "password": user.password,
        "csrf_token": ensure_csrf(client),
    }
    return client.post("/auth/login", data=data, headers=JSON)


def get_code(client: FlaskClient, user: UserInfo, params: dict[str, str]) -> str:
    """Run authorize → (login) → (consent) for ``params`` and return the issued code."""
    r = client.get("/oauth/auth?" + urlencode(params))
    if r.status_code == 302 and r.headers["Location"].startswith("/auth/login"):
        r = sign_in(client, user, **params)
    if r.status_code == 303 and r.headers["Location"].startswith("/auth/grant"):
        r = client.post(
            "/auth/grant", data={**params, "grant": "true", "csrf_token": ensure_csrf(client)}
        )
    assert r.status_code == 302, (r.status_code, r.get_data(as_text=True))
    location = r.headers["Location"]
    assert location.startswith(params["redirect_uri"] + "?"), location
    from tests.conftest import query_of

    query = query_of(location)
    assert set(query) == {"code", "state", "iss"}, query
    assert query["iss"] == ISSUER  # RFC 9207
    return query["code"]


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def token_request(
    client: FlaskClient,
    app_client: ClientInfo | None,
    data: dict[str, str],
    auth: str = "basic",
) -> TestResponse:
    """POST /oauth/token authenticating ``app_client`` with ``auth``: basic, post or none."""
    data = dict(data)
    headers: dict[str, str] = {}
    if app_client is not None:
        if auth == "basic":
            headers = basic(app_client.client_id, app_client.client_secret or "")
        elif auth == "post":
            data.update(
                client_id=app_client.client_id, client_secret=app_client.client_secret or ""
            )
        else:
            data["client_id"] = app_client.client_id
    return client.post("/oauth/token", data=data, headers=headers)


def exchange(
    client: FlaskClient,
    app_client: ClientInfo,
    code: str,
    verifier: str | None = None,
    auth: str = "basic",
    redirect_uri: str | None = None,
) -> TestResponse:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri or app_client.redirect_uris[0],
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return token_request(client, app_client, data, auth)


def introspect(
    client: FlaskClient, token: str, app_client: ClientInfo, hint: str | None = None
) -> TestResponse:
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    return client.post(
        "/oauth/introspect",
        data=data,
        headers=basic(app_client.client_id, app_client.client_secret or ""),
    )


def jwks(client: FlaskClient) -> dict[str, Any]:
    r = client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    return dict(r.json)  # type: ignore[arg-type]


def verify_access_token(client: FlaskClient, token: str) -> dict[str, Any]:
    """Verify ``token`` with PyJWT against the server's published JWKS; return its claims."""
    header = jwt.get_unverified_header(token)
    keys = {k["kid"]: k for k in jwks(client)["keys"]}
    assert header["kid"] in keys, (header, list(keys))
    key = jwt.PyJWK(keys[header["kid"]])
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
    )
    return claims


def path_of(location: str) -> str:
    return urlsplit(location).path
