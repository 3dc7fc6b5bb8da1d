"""Pushed authorization requests (RFC 9126) under attack: a request_uri serves one
authorization of its own client, before it expires; a client that must push cannot be
driven through a plain request. Every refusal is an error page, never a redirect."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from sqlalchemy import update

from tests.auth_server.helpers import JSON
from tests.auth_server.test_par import authorize_pushed, push, pushed
from tests.conftest import TEST_REDIRECT, Flow, make_client

USED = "The request_uri was already used: a pushed request serves one authorization; push it again."


def refused(client, params: dict[str, str]) -> tuple[int, str, str]:
    r = client.get("/oauth/auth?" + urlencode(params), headers=JSON)
    assert "Location" not in r.headers
    return r.status_code, r.json["error"], r.json["error_description"]


def test_request_uri_is_single_use_and_its_clients_own(client, auth_app, user):
    spa = make_client(auth_app, "SPA", public=True)
    other = make_client(auth_app, "Other", public=True)
    request_uri = push(client, spa, **pushed(spa)).json["request_uri"]

    assert refused(client, {"client_id": other.client_id, "request_uri": request_uri}) == (
        400,
        "invalid_request_uri",
        "The request_uri was issued to another client.",
    )
    assert refused(client, {"request_uri": request_uri}) == (
        400,
        "invalid_request",
        "The client_id parameter is required with a request_uri.",
    )
    for unknown in ("urn:ietf:params:oauth:request_uri:forged", "https://evil.example/r"):
        assert refused(client, {"client_id": spa.client_id, "request_uri": unknown}) == (
            400,
            "invalid_request_uri",
            "The request_uri is unknown: push the authorization request to the PAR endpoint "
            "first and use the request_uri it answers.",
        )

    r = authorize_pushed(client, user, spa.client_id, request_uri)
    assert r.status_code == 302 and r.headers["Location"].startswith(TEST_REDIRECT)
    params = {"client_id": spa.client_id, "request_uri": request_uri}
    assert refused(client, params) == (400, "invalid_request_uri", USED)
    # Nor at the consent page (a replayed form).
    r = client.post(
        "/auth/grant",
        data={**params, "grant": "true", "csrf_token": Flow(client).csrf()},
        headers=JSON,
    )
    assert (r.status_code, r.json["error"]) == (400, "invalid_request_uri")

    # Denied is completed too (another app: no remembered consent).
    request_uri = push(client, other, **pushed(other)).json["request_uri"]
    r = authorize_pushed(client, user, other.client_id, request_uri, consent=False)
    assert "error=access_denied" in r.headers["Location"]
    assert refused(client, {"client_id": other.client_id, "request_uri": request_uri})[1] == (
        "invalid_request_uri"
    )


def test_expired_request_uri(client, auth_app, user):
    """Past AUTH_PAR_TTL the authorization endpoint refuses it; once the authorization has
    started, the user has half an hour more to sign in and consent, not longer."""
    from auth_server.extensions import db
    from auth_server.models import PushedAuthorizationRequest

    spa = make_client(auth_app, "SPA", public=True)
    request_uri = push(client, spa, **pushed(spa)).json["request_uri"]
    params = {"client_id": spa.client_id, "request_uri": request_uri}
    assert client.get("/oauth/auth?" + urlencode(params)).status_code == 302  # to login

    def expire(seconds_ago: int) -> None:
        with auth_app.app_context():
            db.session.execute(
                update(PushedAuthorizationRequest).values(expires_at=int(time.time()) - seconds_ago)
            )
            db.session.commit()

    expire(5)
    assert refused(client, params) == (
        400,
        "invalid_request_uri",
        "The request_uri has expired: push the authorization request again and use it at once.",
    )
    r = Flow(client).login(user, **params)  # the login page still finishes the authorization
    assert r.status_code == 303
    expire(1801)
    r = client.get("/auth/grant?" + urlencode(params), headers=JSON)
    assert (r.status_code, r.json["error"]) == (400, "invalid_request_uri")


def test_client_that_must_push_cannot_be_driven_plainly(client, auth_app, user, cli):
    spa = make_client(auth_app, "SPA", public=True)
    assert cli("clients", "update", spa.client_id, "--require-par").exit_code == 0
    plain = {"response_type": "code", "client_id": spa.client_id, "redirect_uri": TEST_REDIRECT}
    for path in ("/oauth/auth", "/auth/login", "/auth/grant"):
        r = client.get(path + "?" + urlencode(plain), headers=JSON)
        assert (r.status_code, r.json["error"]) == (400, "invalid_request"), path
        assert "Location" not in r.headers
    # A pushed request's parameters cannot be overridden in the URL (redirect_uri, scope).
    request_uri = push(client, spa, **pushed(spa)).json["request_uri"]
    r = client.get(
        "/oauth/auth?"
        + urlencode(
            {
                "client_id": spa.client_id,
                "request_uri": request_uri,
                "redirect_uri": "http://127.0.0.1:9/evil",
                "response_type": "token",
            }
        )
    )
    assert r.status_code == 302 and r.headers["Location"].startswith("/auth/login")
    r = authorize_pushed(client, user, spa.client_id, request_uri)
    assert r.headers["Location"].startswith(TEST_REDIRECT + "?code=")
