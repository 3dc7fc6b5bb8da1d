"""The implicit grant: tokens only in the redirect's fragment, only for registered clients."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from tests.auth_server.helpers import (
    auth_params,
    ensure_csrf,
    sign_in,
    verify_access_token,
)
from tests.conftest import ISSUER, TEST_REDIRECT, fragment_of, make_client


def _split(location: str) -> tuple[str, str, dict[str, str]]:
    """Base, query and fragment of a redirect to the client; the fragment must name this
    server in ``iss`` (RFC 9207), checked here and left out of the fragment returned."""
    parts = urlsplit(location)
    fragment = fragment_of(location)
    assert fragment.pop("iss") == ISSUER, location
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parts.query, fragment


def test_implicit_grant_returns_token_in_fragment(client, user, web_client):
    """response_type=token: 302 to redirect_uri#access_token…&token_type=Bearer&expires_in=900."""
    params = auth_params(web_client, response_type="token", state="imp")
    assert sign_in(client, user, **params).status_code == 303
    r = client.post(
        "/auth/grant", data={**params, "grant": "true", "csrf_token": ensure_csrf(client)}
    )
    assert r.status_code == 302
    assert r.headers["Cache-Control"] == "no-store"
    base, query, fragment = _split(r.headers["Location"])
    assert (base, query) == (TEST_REDIRECT, "")
    token = fragment.pop("access_token")
    assert fragment == {
        "token_type": "Bearer",
        "expires_in": "900",
        "scope": "call",
        "state": "imp",
    }
    claims = verify_access_token(client, token)
    assert claims["exp"] - claims["iat"] == 900
    assert (claims["sub"], claims["client_id"], claims["scope"], claims["username"]) == (
        user.id,
        web_client.client_id,
        "call",
        "alice",
    )


def test_implicit_grant_with_remembered_consent_goes_straight_to_fragment(
    client, user, web_client, flow
):
    """Already granted: /oauth/auth itself answers with the token in the fragment."""
    flow.authorize(user, web_client, response_type="token")
    r = client.get(
        "/oauth/auth?" + urlencode(auth_params(web_client, response_type="token", state="again"))
    )
    assert r.status_code == 302
    base, query, fragment = _split(r.headers["Location"])
    assert (base, query) == (TEST_REDIRECT, "")
    assert set(fragment) == {"access_token", "token_type", "expires_in", "scope", "state"}
    assert fragment["state"] == "again"
    assert fragment["expires_in"] == "900"


def test_client_without_token_response_type_is_unauthorized(auth_app, client):
    """A client registered only for code gets unauthorized_client, in the fragment, no token."""
    code_only = make_client(auth_app, "Code only")
    r = client.get("/oauth/auth?" + urlencode(auth_params(code_only, response_type="token")))
    assert r.status_code == 302
    base, query, fragment = _split(r.headers["Location"])
    assert (base, query) == (TEST_REDIRECT, "")
    assert fragment == {
        "error": "unauthorized_client",
        "error_description": "This client is not registered for response_type=token.",
        "state": "st4te",
    }


def test_implicit_refusal_is_access_denied_in_fragment(client, user, web_client):
    """grant=false on an implicit request answers access_denied in the fragment."""
    params = auth_params(web_client, response_type="token")
    assert sign_in(client, user, **params).status_code == 303
    r = client.post(
        "/auth/grant", data={**params, "grant": "false", "csrf_token": ensure_csrf(client)}
    )
    assert r.status_code == 302
    base, query, fragment = _split(r.headers["Location"])
    assert (base, query) == (TEST_REDIRECT, "")
    assert fragment["error"] == "access_denied"
    assert fragment["state"] == "st4te"
    assert "access_token" not in fragment


def test_implicit_invalid_scope_is_reported_in_fragment(client, web_client):
    """Errors of an implicit request are in the fragment too (never the query)."""
    r = client.get(
        "/oauth/auth?" + urlencode(auth_params(web_client, response_type="token", scope="admin"))
    )
    assert r.status_code == 302
    base, query, fragment = _split(r.headers["Location"])
    assert (base, query) == (TEST_REDIRECT, "")
    assert fragment["error"] == "invalid_scope"
    assert fragment["state"] == "st4te"


def test_no_token_ever_in_the_query(client, user, web_client, flow):
    """Across login, consent and the remembered-consent shortcut, no query holds a token."""
    params = auth_params(web_client, response_type="token")
    locations = [client.get("/oauth/auth?" + urlencode(params)).headers["Location"]]
    locations.append(sign_in(client, user, **params).headers["Location"])
    locations.append(
        client.post(
            "/auth/grant", data={**params, "grant": "true", "csrf_token": ensure_csrf(client)}
        ).headers["Location"]
    )
    locations.append(client.get("/oauth/auth?" + urlencode(params)).headers["Location"])
    for location in locations:
        query = urlsplit(location).query
        assert "access_token" not in query and "eyJ" not in query, location
    assert "access_token" in fragment_of(locations[-1])
    assert "access_token" in fragment_of(locations[-2])
