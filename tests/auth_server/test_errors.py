"""RFC 6749 errors: one bad input per test, at the authorization and the token endpoint."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from sqlalchemy import update

from tests.auth_server.helpers import (
    HTML,
    JSON,
    auth_params,
    exchange,
    get_code,
    introspect,
    pkce_params,
    token_request,
)
from tests.conftest import TEST_REDIRECT, make_client, query_of

# --- authorization endpoint: errors shown here, never redirected -----------------------


def _error_page(client, query: dict[str, str], headers=JSON):
    r = client.get("/oauth/auth?" + urlencode(query), headers=headers)
    assert r.status_code == 400, (r.status_code, r.headers.get("Location"))
    assert "Location" not in r.headers
    return r


def _redirected_error(client, query: dict[str, str]) -> dict[str, str]:
    r = client.get("/oauth/auth?" + urlencode(query), headers=JSON)
    assert r.status_code == 302, (r.status_code, r.get_data(as_text=True))
    location = r.headers["Location"]
    assert location.split("?", 1)[0] == TEST_REDIRECT
    return query_of(location)


def test_missing_client_id_is_an_error_page(client, web_client):
    """No client_id: 400 error page (JSON on request), no redirect."""
    query = auth_params(web_client)
    del query["client_id"]
    r = _error_page(client, query)
    assert r.json == {
        "error": "invalid_client",
        "error_description": "Missing 'client_id' parameter.",
    }


def test_unknown_client_id_is_an_error_page(client, web_client):
    """An unknown client_id: 400 invalid_client on the error page, no redirect."""
    r = _error_page(client, {**auth_params(web_client), "client_id": "no-such-client"})
    assert r.json == {
        "error": "invalid_client",
        "error_description": "The client does not exist on this server.",
    }


def test_unregistered_redirect_uri_is_an_error_page(client, web_client):
    """A redirect_uri not registered for the client: 400 invalid_request, never a redirect."""
    evil = "https://attacker.example/cb"
    r = _error_page(client, {**auth_params(web_client), "redirect_uri": evil})
    assert r.json == {
        "error": "invalid_request",
        "error_description": f"Redirect URI {evil} is not supported by client.",
    }


def test_unregistered_redirect_uri_error_page_html(client, web_client):
    """A browser gets the HTML error page (400) for an unregistered redirect_uri."""
    query = {**auth_params(web_client), "redirect_uri": "https://attacker.example/cb"}
    r = _error_page(client, query, headers=HTML)
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "<strong>invalid_request</strong>" in html
    assert 'href="https://attacker.example' not in html


def test_redirect_uri_differing_only_in_path_is_refused(client, web_client):
    """Registered URIs match exactly: an extra path segment is refused."""
    r = _error_page(client, {**auth_params(web_client), "redirect_uri": TEST_REDIRECT + "/x"})
    assert r.json["error"] == "invalid_request"


def test_unsupported_response_type_with_bad_redirect_uri_is_not_redirected(client, web_client):
    """Even an unsupported response_type is not sent to an unregistered redirect_uri."""
    r = _error_page(
        client,
        {
            **auth_params(web_client),
            "response_type": "bogus",
            "redirect_uri": "https://attacker.example/cb",
        },
    )
    assert r.json["error"] == "unsupported_response_type"


def test_login_page_with_unregistered_redirect_uri_is_an_error_page(client, web_client):
    """The login page validates the carried parameters the same way: 400, no redirect."""
    query = {**auth_params(web_client), "redirect_uri": "https://attacker.example/cb"}
    r = client.get("/auth/login?" + urlencode(query), headers=JSON)
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert r.json["error"] == "invalid_request"


# --- authorization endpoint: errors redirected to the validated redirect_uri ------------


def test_missing_response_type(client, web_client):
    """No response_type: invalid_request (a missing parameter), redirected with the state."""
    query = auth_params(web_client)
    del query["response_type"]
    assert _redirected_error(client, query) == {
        "error": "invalid_request",
        "error_description": "Missing 'response_type' parameter.",
        "state": "st4te",
    }


def test_missing_response_type_with_bad_redirect_uri_is_not_redirected(client, web_client):
    """No response_type and an unregistered redirect_uri: the error page, not a redirect."""
    query = {**auth_params(web_client), "redirect_uri": "https://attacker.example/cb"}
    del query["response_type"]
    r = _error_page(client, query)
    assert r.json == {
        "error": "invalid_request",
        "error_description": "Missing 'response_type' parameter.",
    }


def test_unsupported_response_type(client, web_client):
    """response_type=bogus: unsupported_response_type, redirected with the state."""
    result = _redirected_error(client, auth_params(web_client, response_type="bogus"))
    assert (result["error"], result["state"]) == ("unsupported_response_type", "st4te")
    assert "code" not in result


def test_unknown_scope(client, web_client):
    """A scope the server does not know: redirect with error=invalid_scope."""
    assert _redirected_error(client, auth_params(web_client, scope="call telepathy")) == {
        "error": "invalid_scope",
        "error_description": "The requested scope is invalid, unknown, or malformed.",
        "state": "st4te",
    }


def test_scope_the_client_is_not_registered_for(client, web_client):
    """A known scope outside the client's registration: redirect with error=invalid_scope."""
    assert _redirected_error(client, auth_params(web_client, scope="admin")) == {
        "error": "invalid_scope",
        "error_description": "The requested scope is invalid, unknown, or malformed.",
        "state": "st4te",
    }


def test_public_client_without_code_challenge(auth_app, client):
    """A public client must use PKCE: redirect with error=invalid_request."""
    spa = make_client(auth_app, "SPA", public=True)
    assert _redirected_error(client, auth_params(spa)) == {
        "error": "invalid_request",
        "error_description": "Public clients must send a PKCE 'code_challenge' with method S256.",
        "state": "st4te",
    }


def test_plain_code_challenge_method_is_refused(client, web_client):
    """code_challenge_method=plain is not offered: invalid_request."""
    verifier, query = pkce_params(web_client)
    query.update(code_challenge=verifier, code_challenge_method="plain")
    assert _redirected_error(client, query) == {
        "error": "invalid_request",
        "error_description": "'code_challenge_method' must be S256.",
        "state": "st4te",
    }


def test_code_challenge_without_method_is_refused(client, web_client):
    """A challenge without a method means plain (RFC 7636 §4.3), which is refused."""
    _, query = pkce_params(web_client)
    del query["code_challenge_method"]
    result = _redirected_error(client, query)
    assert (result["error"], result["state"]) == ("invalid_request", "st4te")


def test_malformed_code_challenge_is_refused(client, web_client):
    """A challenge too short to be an S256 value is invalid_request."""
    _, query = pkce_params(web_client)
    query["code_challenge"] = "short"
    result = _redirected_error(client, query)
    assert (result["error"], result["state"]) == ("invalid_request", "st4te")


# --- token endpoint --------------------------------------------------------------------


def test_missing_grant_type(client, web_client):
    """No grant_type: invalid_request (RFC 6749 §5.2, a missing parameter)."""
    r = token_request(client, web_client, {"code": "x"})
    assert r.status_code == 400
    assert r.headers["Cache-Control"] == "no-store"
    assert r.json == {
        "error": "invalid_request",
        "error_description": "Missing 'grant_type' parameter.",
    }


def test_password_grant_is_unsupported(client, web_client, user):
    """grant_type=password is not offered: unsupported_grant_type."""
    r = token_request(
        client,
        web_client,
        {"grant_type": "password", "username": user.username, "password": user.password},
    )
    assert r.status_code == 400
    assert r.json == {"error": "unsupported_grant_type"}


def test_wrong_client_secret_basic(client, admin_client):
    """A wrong secret in the Authorization header: 401 invalid_client with WWW-Authenticate."""
    admin_client.client_secret = "wrong-secret"
    r = token_request(client, admin_client, {"grant_type": "client_credentials"}, "basic")
    assert r.status_code == 401
    assert r.json["error"] == "invalid_client"
    assert r.headers["WWW-Authenticate"].startswith('Basic error="invalid_client"')
    assert "access_token" not in r.json


def test_wrong_client_secret_post(client, admin_client):
    """A wrong secret in the form: invalid_client too."""
    admin_client.client_secret = "wrong-secret"
    r = token_request(client, admin_client, {"grant_type": "client_credentials"}, "post")
    assert r.status_code == 401
    assert r.json["error"] == "invalid_client"


def test_unknown_client(client, admin_client):
    """An unknown client id: invalid_client (401 when it came in the Authorization header)."""
    admin_client.client_id = "no-such-client"
    r = token_request(client, admin_client, {"grant_type": "client_credentials"}, "basic")
    assert r.status_code == 401
    assert r.json == {
        "error": "invalid_client",
        "error_description": "The client does not exist on this server.",
    }
    r = token_request(client, admin_client, {"grant_type": "client_credentials"}, "post")
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_client",
        "error_description": "The client does not exist on this server.",
    }


def test_missing_code(client, web_client):
    """grant_type=authorization_code without code: invalid_request."""
    r = token_request(
        client, web_client, {"grant_type": "authorization_code", "redirect_uri": TEST_REDIRECT}
    )
    assert r.status_code == 400
    assert r.json == {"error": "invalid_request", "error_description": "Missing 'code' in request."}


def test_wrong_code(client, web_client):
    """A code this server never issued: invalid_grant."""
    r = exchange(client, web_client, "made-up-code", "v" * 43)
    assert r.status_code == 400
    assert r.json == {"error": "invalid_grant", "error_description": "Invalid 'code' in request."}


def test_code_issued_to_another_client(auth_app, client, user, web_client):
    """A code is bound to its client: another client presenting it gets invalid_grant."""
    other = make_client(auth_app, "Other")
    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    r = exchange(client, other, code, verifier)
    assert r.status_code == 400
    assert r.json == {"error": "invalid_grant", "error_description": "Invalid 'code' in request."}


def test_redirect_uri_mismatch(auth_app, client, user):
    """The token request's redirect_uri must equal the authorization request's."""
    two = make_client(auth_app, "Two URIs", redirect_uris=[TEST_REDIRECT, TEST_REDIRECT + "2"])
    verifier, params = pkce_params(two)
    code = get_code(client, user, params)
    r = exchange(client, two, code, verifier, redirect_uri=TEST_REDIRECT + "2")
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_grant",
        "error_description": "Invalid 'redirect_uri' in request.",
    }


def test_wrong_pkce_verifier(client, user, web_client):
    """A verifier that does not hash to the challenge: invalid_grant."""
    _, params = pkce_params(web_client)
    code = get_code(client, user, params)
    r = exchange(client, web_client, code, "x" * 64)
    assert r.status_code == 400
    assert r.json == {"error": "invalid_grant", "error_description": "Code challenge failed."}


def test_missing_pkce_verifier(client, user, web_client):
    """A challenge was sent but the token request has no verifier: invalid_request."""
    _, params = pkce_params(web_client)
    code = get_code(client, user, params)
    r = exchange(client, web_client, code, verifier=None)
    assert r.status_code == 400
    assert r.json == {"error": "invalid_request", "error_description": "Missing 'code_verifier'"}


def test_replayed_code_is_refused_and_revokes_the_first_tokens(client, user, web_client):
    """Second use of a code: invalid_grant, and the tokens of the first use become inactive."""
    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    first = exchange(client, web_client, code, verifier)
    assert first.status_code == 200, first.json
    assert introspect(client, first.json["access_token"], web_client).json["active"] is True

    r = exchange(client, web_client, code, verifier)
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_grant",
        "error_description": "The authorization code was already used; the tokens issued from it are revoked.",
    }
    assert introspect(client, first.json["access_token"], web_client).json == {"active": False}
    assert introspect(client, first.json["refresh_token"], web_client).json == {"active": False}
    r = token_request(
        client,
        web_client,
        {"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"]},
    )
    assert r.status_code == 400
    assert r.json["error"] == "invalid_grant"


def test_expired_code(auth_app, client, user, web_client):
    """A code past its expiry: invalid_grant."""
    from auth_server.extensions import db
    from auth_server.models import AuthorizationCode, sha256_hex

    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    with auth_app.app_context():
        db.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == sha256_hex(code))
            .values(expires_at=int(time.time()) - 5)
        )
        db.session.commit()
    r = exchange(client, web_client, code, verifier)
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_grant",
        "error_description": "The authorization code has expired.",
    }


def test_token_endpoint_refuses_get(client, web_client):
    """The original fetched tokens with GET; RFC 6749 §3.2 says POST: GET is 405."""
    r = client.get(
        "/oauth/token?"
        + urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": web_client.client_id,
                "client_secret": web_client.client_secret,
            }
        )
    )
    assert r.status_code == 405
    assert "POST" in r.headers["Allow"]
    assert r.json == {
        "error": "method_not_allowed",
        "error_description": "This method is not allowed on this URL.",
    }


def test_omitted_redirect_uri_with_several_registered_is_an_error_page(auth_app, client):
    """RFC 6749 §3.1.2.3: with several registered redirect URIs the request must name one."""
    many = make_client(
        auth_app, "Two URIs", redirect_uris=[TEST_REDIRECT, "https://app.example.com/cb"]
    )
    query = auth_params(many)
    del query["redirect_uri"]
    r = _error_page(client, query)
    assert r.json == {
        "error": "invalid_request",
        "error_description": "Missing 'redirect_uri' in request.",
    }


def test_omitted_redirect_uri_with_one_registered_uses_it(client, web_client):
    """With exactly one registered redirect URI, omitting it is allowed (it is the default)."""
    query = auth_params(web_client)
    del query["redirect_uri"]
    r = client.get("/oauth/auth?" + urlencode(query))
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/auth/login?")
