"""Pushed authorization requests (RFC 9126): the endpoint, the authorization endpoint's use
of a request_uri, and the per-client and global settings that require PAR."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from flask.testing import FlaskClient

from tests.auth_server.helpers import JSON
from tests.conftest import (
    TEST_REDIRECT,
    ClientInfo,
    Flow,
    UserInfo,
    make_client,
    pkce_pair,
    query_of,
)

PREFIX = "urn:ietf:params:oauth:request_uri:"


def pushed(app_client: ClientInfo, verifier_out: list[str] | None = None, **extra: str) -> dict:
    """A pushed request's form: a code request with PKCE (plus ``extra``)."""
    verifier, challenge = pkce_pair()
    if verifier_out is not None:
        verifier_out.append(verifier)
    form = {
        "response_type": "code",
        "client_id": app_client.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "state": "pushed-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}


def push(client: FlaskClient, app_client: ClientInfo, **form: Any) -> Any:
    headers = app_client.basic() if app_client.client_secret else {}
    data = dict(form)
    if app_client.client_secret:
        data.pop("client_id", None)
    return client.post("/oauth/par", data=data, headers=headers)


def authorize_pushed(
    client: FlaskClient, user: UserInfo, client_id: str, request_uri: str, consent: bool = True
) -> Any:
    """/oauth/auth with client_id and request_uri → login → consent; the last response."""
    params = {"client_id": client_id, "request_uri": request_uri}
    r = client.get("/oauth/auth?" + urlencode(params))
    flow = Flow(client)
    if r.status_code == 302 and r.headers["Location"].startswith("/auth/login"):
        assert query_of(r.headers["Location"]) == params  # nothing else travels
        r = flow.login(user, **params)
    if r.status_code == 303 and r.headers["Location"].startswith("/auth/grant"):
        assert query_of(r.headers["Location"]) == params
        r = client.post(
            "/auth/grant",
            data={**params, "grant": "true" if consent else "false", "csrf_token": flow.csrf()},
        )
    return r


def test_pushed_request_drives_the_code_flow(client, auth_app, user):
    """201 with a request_uri; the authorization endpoint uses the pushed parameters only
    (scope, state, redirect_uri of the URL are ignored); login and consent carry just
    client_id and request_uri; the code redeems with the pushed PKCE verifier."""
    public = make_client(auth_app, "SPA", public=True)
    verifiers: list[str] = []
    r = push(client, public, **pushed(public, verifiers))
    assert r.status_code == 201, r.get_data(as_text=True)
    assert set(r.json) == {"request_uri", "expires_in"}
    assert r.json["expires_in"] == 60
    assert r.json["request_uri"].startswith(PREFIX)
    assert len(r.json["request_uri"]) > len(PREFIX) + 40
    assert r.headers["Cache-Control"] == "no-store"
    request_uri = r.json["request_uri"]

    # Parameters outside the pushed request are ignored.
    sneaky = {
        "client_id": public.client_id,
        "request_uri": request_uri,
        "scope": "admin",
        "state": "other",
        "redirect_uri": "http://127.0.0.1:9/evil",
    }
    r = client.get("/oauth/auth?" + urlencode(sneaky))
    assert r.status_code == 302
    assert query_of(r.headers["Location"]) == {
        "client_id": public.client_id,
        "request_uri": request_uri,
    }
    r = authorize_pushed(client, user, public.client_id, request_uri)
    assert r.status_code == 302
    assert r.headers["Location"].startswith(TEST_REDIRECT + "?")
    result = query_of(r.headers["Location"])
    assert result["state"] == "pushed-state"
    r = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": TEST_REDIRECT,
            "code_verifier": verifiers[0],
            "client_id": public.client_id,
        },
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["scope"] == "call"
    assert r.json["token_type"] == "Bearer"

    # A confidential client authenticates as at the token endpoint (HTTP Basic here).
    confidential = make_client(auth_app, "Web")
    r = push(client, confidential, **pushed(confidential))
    assert r.status_code == 201
    r = client.post(
        "/oauth/par",
        data={**pushed(confidential), "client_secret": confidential.client_secret},
    )
    assert r.status_code == 201  # client_secret_post; the secret is not stored as a parameter

    meta = client.get("/.well-known/oauth-authorization-server").json
    assert meta["pushed_authorization_request_endpoint"] == "http://127.0.0.1:8888/oauth/par"
    assert meta["require_pushed_authorization_requests"] is False


def _error(r: Any) -> tuple[int, str, str]:
    return r.status_code, r.json["error"], r.json["error_description"]


def test_pushed_request_is_validated_up_front(client, auth_app):
    """Every refusal of the authorization endpoint, answered in the PAR response (JSON,
    never a redirect), plus PAR's own: no request_uri, no request object."""
    public = make_client(auth_app, "SPA", public=True)
    confidential = make_client(auth_app, "Web")

    r = client.post("/oauth/par", data=pushed(confidential))
    assert r.status_code == 401
    assert r.json["error"] == "invalid_client"

    r = push(client, confidential, **pushed(confidential, redirect_uri="http://127.0.0.1:9/x"))
    assert r.status_code == 400 and "Location" not in r.headers
    assert r.json["error"] == "invalid_request"
    assert "state" not in r.json

    assert _error(
        push(client, public, **pushed(public, code_challenge=None, code_challenge_method=None))
    ) == (
        400,
        "invalid_request",
        "Public clients must send a PKCE 'code_challenge' with method S256.",
    )
    r = push(client, public, **pushed(public, scope="admin"))
    assert (r.status_code, r.json["error"]) == (400, "invalid_scope")
    r = push(client, public, **pushed(public, response_type="token"))
    assert (r.status_code, r.json["error"]) == (400, "unauthorized_client")
    assert _error(push(client, public, **pushed(public, response_type=None))) == (
        400,
        "invalid_request",
        "Missing 'response_type' parameter.",
    )
    assert _error(push(client, public, **pushed(public, request_uri=PREFIX + "x"))) == (
        400,
        "invalid_request",
        "A pushed authorization request cannot contain a request_uri: push the "
        "authorization parameters themselves.",
    )
    assert _error(push(client, public, **pushed(public, request="eyJhbGciOi.x.y"))) == (
        400,
        "request_not_supported",
        "Request objects (the 'request' parameter) are not supported: push the "
        "authorization parameters as form fields.",
    )
    r = client.post(
        "/oauth/par",
        data=json.dumps(pushed(public)),
        content_type="application/json",
    )
    assert (r.status_code, r.json["error"]) == (400, "invalid_request")
    assert r.get_json()["error_description"].startswith("This endpoint takes application/x-www")
    other = make_client(auth_app, "Other")
    r = client.post(
        "/oauth/par",
        data={**pushed(confidential), "client_id": other.client_id},
        headers=confidential.basic(),
    )
    assert (r.status_code, r.json["error"]) == (400, "invalid_request")


def test_clients_that_must_push(client, auth_app, user, cli, app_with):
    """require_pushed_authorization_requests (CLI --require-par): a plain request is an
    error page (no redirect); a pushed one works. AUTH_REQUIRE_PAR: every client."""
    r = cli(
        "clients", "create", "--name", "Strict", "--public", "--redirect-uri", TEST_REDIRECT,
        "--require-par", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    strict = ClientInfo(json.loads(r.output)["client_id"], None, [TEST_REDIRECT])
    shown = json.loads(cli("clients", "show", strict.client_id).output)
    assert shown["require_pushed_authorization_requests"] is True

    _, challenge = pkce_pair()
    plain = {
        "response_type": "code",
        "client_id": strict.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    r = client.get("/oauth/auth?" + urlencode(plain), headers=JSON)
    assert r.status_code == 400 and "Location" not in r.headers
    assert r.json == {
        "error": "invalid_request",
        "error_description": "This client must push its authorization requests (RFC 9126): "
        "POST them to the pushed_authorization_request_endpoint and send only client_id and "
        "request_uri here.",
    }
    request_uri = push(client, strict, **pushed(strict)).json["request_uri"]
    r = authorize_pushed(client, user, strict.client_id, request_uri)
    assert r.status_code == 302 and "code=" in r.headers["Location"]

    r = cli("clients", "update", strict.client_id, "--no-require-par")
    assert r.exit_code == 0, r.output
    assert "require_pushed_authorization_requests" not in json.loads(r.output)
    assert client.get("/oauth/auth?" + urlencode(plain)).status_code == 302  # to login

    strict_app = app_with(AUTH_REQUIRE_PAR=True)  # (an emptied database)
    anyone = make_client(strict_app, "Any", public=True)
    other = strict_app.test_client()
    assert (
        other.get("/.well-known/oauth-authorization-server").json[
            "require_pushed_authorization_requests"
        ]
        is True
    )
    r = other.get(
        "/oauth/auth?" + urlencode({**plain, "client_id": anyone.client_id}), headers=JSON
    )
    assert (r.status_code, r.json["error"]) == (400, "invalid_request")
    assert push(other, anyone, **pushed(anyone)).status_code == 201


def test_pushed_prompt_none_is_decided_at_the_authorization_endpoint(client, auth_app, user):
    """prompt=none may be pushed: whether the user is signed in is known only when the
    browser reaches the authorization endpoint (OpenID Connect Core §3.1.2.1), not at
    PAR, where no browser takes part. Signed in with consent: the code, no page; signed
    out: login_required, redirected to the client."""
    spa = make_client(auth_app, "SPA", public=True, scope="call openid")
    openid = {"scope": "openid call", "nonce": "n-0"}
    r = authorize_pushed(
        client, user, spa.client_id, push(client, spa, **pushed(spa, **openid)).json["request_uri"]
    )
    assert r.status_code == 302 and "code=" in r.headers["Location"]

    r = push(client, spa, **pushed(spa, scope="openid call", nonce="n-1", prompt="none"))
    assert r.status_code == 201, r.get_data(as_text=True)
    params = {"client_id": spa.client_id, "request_uri": r.json["request_uri"]}
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302 and set(query_of(r.headers["Location"])) == {
        "code",
        "state",
        "iss",
    }

    signed_out = client.application.test_client()
    r = push(signed_out, spa, **pushed(spa, scope="openid call", nonce="n-2", prompt="none"))
    assert r.status_code == 201, r.get_data(as_text=True)
    r = signed_out.get(
        "/oauth/auth?"
        + urlencode({"client_id": spa.client_id, "request_uri": r.json["request_uri"]})
    )
    assert r.status_code == 302
    assert query_of(r.headers["Location"])["error"] == "login_required"


def test_openid_parameters_are_checked_when_pushed(client, auth_app):
    """RFC 9126 §2.1: the whole request is validated at the push; a bad max_age or nonce is
    a 400 there (never a redirect), not a 201 refused later at /oauth/auth."""
    app_client = make_client(auth_app, "OIDC", scope="call openid")
    for extra, description in (
        ({"max_age": "-5"}, "The max_age parameter must be a whole number of seconds."),
        ({"nonce": "n" * 300}, "The nonce must be 1 to 255 printable ASCII characters."),
    ):
        r = push(client, app_client, **pushed(app_client, scope="openid", **extra))
        assert (r.status_code, r.json) == (
            400,
            {"error": "invalid_request", "error_description": description},
        ), extra
