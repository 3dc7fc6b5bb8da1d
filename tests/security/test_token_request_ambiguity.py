"""One request, one reading: a repeated parameter or a client that authenticates twice is
refused with 400 ``invalid_request`` (RFC 6749 §2.3, §3.1, §3.2), never resolved by picking
one of the values.

Attacks (each accepted before): HTTP Basic plus ``client_secret_post`` in one request (a
wrong Basic secret even fell through to the form's); ``grant_type``, ``code``, ``scope`` or
``token`` sent twice at the token, revocation and introspection endpoints (Authlib read the
first); a parameter in the query string and again in the body; and a repeated PKCE
``code_challenge`` at the authorization endpoint, the login form and the consent form (the
code was issued, bound to whichever came first). Nothing is issued, redeemed or revoked by a
refused request.
"""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from tests.auth_server.helpers import JSON, exchange, get_code, pkce_params
from tests.conftest import TEST_REDIRECT, ClientInfo, pkce_pair

FORM = "application/x-www-form-urlencoded"


def refused(description: str) -> dict[str, str]:
    return {"error": "invalid_request", "error_description": description}


def repeated(name: str) -> dict[str, str]:
    return refused(f"The parameter '{name}' was sent more than once; send each parameter once.")


TWO_METHODS = refused(
    "The client authenticated twice, with HTTP Basic and with a client_secret parameter; "
    "use one method: client_secret_basic or client_secret_post."
)
TWO_CLIENTS = refused(
    "The client_id parameter names another client than the HTTP Basic credentials; "
    "identify the client once."
)


def count_tokens(auth_app) -> int:
    from auth_server.models import Token

    with auth_app.app_context():
        db = auth_app.extensions["sqlalchemy"]
        return int(db.session.scalar(select(func.count()).select_from(Token)) or 0)


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def post_form(client, path: str, body: str, headers: dict[str, str] | None = None, query=""):
    return client.post(
        path + (f"?{query}" if query else ""), data=body, content_type=FORM, headers=headers or {}
    )


def assert_refused(r, expected: dict[str, str]) -> None:
    assert (r.status_code, r.json) == (400, expected), r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store"


# --- two client authentications (RFC 6749 §2.3) ---------------------------------------------


def test_basic_and_client_secret_post_together_are_refused(client, auth_app, admin_client):
    cc = {"grant_type": "client_credentials", "scope": "admin"}
    both = urlencode(
        {**cc, "client_id": admin_client.client_id, "client_secret": admin_client.client_secret}
    )
    r = post_form(client, "/oauth/token", both, admin_client.basic())
    assert_refused(r, TWO_METHODS)
    # A wrong Basic secret used to fall through to the form's right one: refused as well.
    r = post_form(client, "/oauth/token", both, basic(admin_client.client_id, "wrong"))
    assert_refused(r, TWO_METHODS)
    assert count_tokens(auth_app) == 0
    # Each method alone works.
    assert post_form(client, "/oauth/token", urlencode(cc), admin_client.basic()).status_code == 200
    assert post_form(client, "/oauth/token", both).status_code == 200


def test_basic_with_another_clients_id_in_the_body_is_refused(
    client, auth_app, admin_client, web_client
):
    body = urlencode(
        {"grant_type": "client_credentials", "scope": "admin", "client_id": web_client.client_id}
    )
    assert_refused(post_form(client, "/oauth/token", body, admin_client.basic()), TWO_CLIENTS)
    assert count_tokens(auth_app) == 0
    # RFC 6749 §3.2.1 lets a client name itself in the body too.
    same = urlencode(
        {"grant_type": "client_credentials", "scope": "admin", "client_id": admin_client.client_id}
    )
    assert post_form(client, "/oauth/token", same, admin_client.basic()).status_code == 200


def test_two_authentications_are_refused_at_revocation_and_introspection(
    client, flow, user, web_client
):
    tokens = flow.token(user, web_client)
    for path in ("/oauth/revoke", "/oauth/introspect"):
        body = urlencode(
            {
                "token": tokens["access_token"],
                "client_id": web_client.client_id,
                "client_secret": web_client.client_secret,
            }
        )
        assert_refused(post_form(client, path, body, web_client.basic()), TWO_METHODS)
    r = client.post(
        "/oauth/introspect", data={"token": tokens["access_token"]}, headers=web_client.basic()
    )
    assert r.json["active"] is True  # the refused revocation revoked nothing


# --- repeated parameters at the token, revocation and introspection endpoints ---------------


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ("grant_type=client_credentials&grant_type=authorization_code&scope=admin", "grant_type"),
        ("grant_type=client_credentials&grant_type=client_credentials&scope=admin", "grant_type"),
        ("grant_type=client_credentials&scope=admin&scope=call", "scope"),
        ("grant_type=client_credentials&scope=admin&scope=", "scope"),
        ("grant_type=client_credentials&scope=admin&x=1&x=2", "x"),
    ],
    ids=["grant_type", "same-grant_type-twice", "scope", "empty-second-scope", "unknown"],
)
def test_repeated_parameter_at_the_token_endpoint_is_refused(
    client, auth_app, admin_client, body, name
):
    assert_refused(post_form(client, "/oauth/token", body, admin_client.basic()), repeated(name))
    assert count_tokens(auth_app) == 0


def test_parameter_in_the_query_and_again_in_the_body_is_refused(client, auth_app, admin_client):
    body = "grant_type=client_credentials&scope=admin"
    r = post_form(
        client, "/oauth/token", body, admin_client.basic(), "grant_type=client_credentials"
    )
    assert_refused(r, repeated("grant_type"))
    assert count_tokens(auth_app) == 0


def test_repeated_code_is_refused_and_neither_code_is_spent(client, auth_app, user, web_client):
    verifier, params = pkce_params(web_client)
    first = get_code(client, user, params)
    verifier2, params2 = pkce_params(web_client)
    second = get_code(client, user, params2)
    before = count_tokens(auth_app)
    body = urlencode(
        [
            ("grant_type", "authorization_code"),
            ("code", first),
            ("code", second),
            ("redirect_uri", TEST_REDIRECT),
            ("code_verifier", verifier),
        ]
    )
    assert_refused(post_form(client, "/oauth/token", body, web_client.basic()), repeated("code"))
    assert count_tokens(auth_app) == before
    # Both codes are still good, once each.
    assert exchange(client, web_client, first, verifier).status_code == 200
    assert exchange(client, web_client, second, verifier2).status_code == 200


@pytest.mark.parametrize("path", ["/oauth/revoke", "/oauth/introspect"])
def test_repeated_token_at_revocation_and_introspection_is_refused(
    client, flow, user, web_client, path
):
    one = flow.token(user, web_client)["access_token"]
    two = flow.token(user, web_client)["access_token"]
    body = urlencode([("token", one), ("token", two)])
    assert_refused(post_form(client, path, body, web_client.basic()), repeated("token"))
    for token in (one, two):
        r = client.post("/oauth/introspect", data={"token": token}, headers=web_client.basic())
        assert r.json["active"] is True


# --- repeated parameters in an authorization request (RFC 6749 §3.1) ------------------------


def _consented(flow, user, web_client: ClientInfo) -> None:
    flow.authorize(user, web_client)  # signed in, consent remembered: codes flow at once


def _twice(params: dict[str, str], name: str, second: str) -> str:
    """``params`` with ``name`` sent again with ``second`` (added twice if it was not there)."""
    extra = [(name, second)] if name in params else [(name, "one"), (name, second)]
    return urlencode(params) + "&" + urlencode(extra)


@pytest.mark.parametrize("name", ["code_challenge", "code_challenge_method", "nonce"])
def test_repeated_parameter_at_the_authorization_endpoint_is_refused_without_redirect(
    client, flow, user, web_client, name
):
    """Before: a repeated PKCE parameter was sent back to the client as an error, any other
    (``nonce``) was ignored and the code issued; now the error page, for every parameter."""
    _consented(flow, user, web_client)
    _, params = pkce_params(web_client)
    second = {"code_challenge": pkce_pair()[1], "code_challenge_method": "S256"}.get(name, "two")
    r = client.get("/oauth/auth?" + _twice(params, name, second), headers=JSON)
    assert "Location" not in r.headers
    assert (r.status_code, r.json) == (400, repeated(name))
    # The error page, for a browser.
    r = client.get("/oauth/auth?" + _twice(params, name, second))
    assert r.status_code == 400 and "Location" not in r.headers
    assert "sent more than once" in r.get_data(as_text=True)


def test_repeated_parameter_in_the_consent_and_login_forms_is_refused(
    client, flow, user, web_client
):
    _consented(flow, user, web_client)
    _, params = pkce_params(web_client)
    body = _twice(
        {**params, "grant": "true", "csrf_token": flow.csrf()}, "code_challenge", "x" * 43
    )
    r = client.post("/auth/grant", data=body, content_type=FORM, headers=JSON)
    assert "Location" not in r.headers
    assert (r.status_code, r.json) == (400, repeated("code_challenge"))
    body = _twice(
        {**params, "username": user.username, "password": user.password, "csrf_token": flow.csrf()},
        "code_challenge",
        "x" * 43,
    )
    r = client.post("/auth/login", data=body, content_type=FORM, headers=JSON)
    assert "Location" not in r.headers
    assert (r.status_code, r.json) == (400, repeated("code_challenge"))
