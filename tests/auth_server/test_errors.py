"""RFC 6749 errors: one bad input per test, at the authorization and the token endpoint."""

from __future__ import annotations

import re
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import update

from tests.auth_server.helpers import (
    HTML,
    JSON,
    auth_params,
    basic,
    ensure_csrf,
    exchange,
    get_code,
    introspect,
    pkce_params,
    token_request,
)
from tests.conftest import ISSUER, TEST_REDIRECT, make_client, make_user, query_of


def basic_header(client_id: str, secret: str) -> str:
    return basic(client_id, secret)["Authorization"]


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
    query = query_of(location)
    assert query.pop("iss") == ISSUER, location  # RFC 9207, on errors too
    return query


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
        "error_description": "The scope 'telepathy' is unknown; this server offers call, admin, introspect, dialer, openid, profile and email.",
        "state": "st4te",
    }


def test_scope_the_client_is_not_registered_for(client, web_client):
    """A known scope outside the client's registration: redirect with error=invalid_scope."""
    assert _redirected_error(client, auth_params(web_client, scope="admin")) == {
        "error": "invalid_scope",
        "error_description": "This client may not ask for the scope 'admin'; it is registered for call.",
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
        "error_description": "The code_challenge_method must be S256.",
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

WRONG_SECRET = {
    "error": "invalid_client",
    "error_description": "Client authentication failed: wrong client_secret for this client_id.",
}


def test_missing_grant_type(client, web_client):
    """No grant_type: invalid_request (RFC 6749 §5.2, a missing parameter)."""
    r = token_request(client, web_client, {"code": "x"})
    assert r.status_code == 400
    assert r.headers["Cache-Control"] == "no-store"
    assert r.json == {
        "error": "invalid_request",
        "error_description": (
            "The 'grant_type' parameter is required; "
            "use authorization_code, refresh_token, client_credentials or "
            "urn:ietf:params:oauth:grant-type:device_code."
        ),
    }


def test_password_grant_is_unsupported(client, web_client, user):
    """grant_type=password is not offered: unsupported_grant_type."""
    r = token_request(
        client,
        web_client,
        {"grant_type": "password", "username": user.username, "password": user.password},
    )
    assert r.status_code == 400
    assert r.json == {
        "error": "unsupported_grant_type",
        "error_description": (
            "The grant_type 'password' is not supported; "
            "use authorization_code, refresh_token, client_credentials or "
            "urn:ietf:params:oauth:grant-type:device_code."
        ),
    }


def test_wrong_client_secret_basic(client, admin_client):
    """A wrong secret in the Authorization header: 401 invalid_client with WWW-Authenticate."""
    admin_client.client_secret = "wrong-secret"
    r = token_request(client, admin_client, {"grant_type": "client_credentials"}, "basic")
    assert r.status_code == 401
    assert r.json == WRONG_SECRET
    assert r.headers["WWW-Authenticate"] == (
        f'Basic error="invalid_client", error_description="{WRONG_SECRET["error_description"]}"'
    )


def test_wrong_client_secret_post(client, admin_client):
    """A wrong secret in the form: invalid_client too."""
    admin_client.client_secret = "wrong-secret"
    r = token_request(client, admin_client, {"grant_type": "client_credentials"}, "post")
    assert r.status_code == 401
    assert r.json == WRONG_SECRET


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
    assert r.json == {
        "error": "invalid_request",
        "error_description": "The 'code' parameter is required with grant_type=authorization_code.",
    }


def test_wrong_code(client, web_client):
    """A code this server never issued: invalid_grant."""
    r = exchange(client, web_client, "made-up-code", "v" * 43)
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_grant",
        "error_description": (
            "The authorization code is unknown: this server never issued it, or it was cut short."
        ),
    }


def test_code_issued_to_another_client(auth_app, client, user, web_client):
    """A code is bound to its client: another client presenting it gets invalid_grant."""
    other = make_client(auth_app, "Other")
    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    r = exchange(client, other, code, verifier)
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_grant",
        "error_description": "The authorization code was issued to another client.",
    }
    # Presenting it did not use it up: its own client still redeems it.
    assert exchange(client, web_client, code, verifier).status_code == 200


def test_redirect_uri_mismatch(auth_app, client, user):
    """The token request's redirect_uri must equal the authorization request's."""
    two = make_client(auth_app, "Two URIs", redirect_uris=[TEST_REDIRECT, TEST_REDIRECT + "2"])
    verifier, params = pkce_params(two)
    code = get_code(client, user, params)
    r = exchange(client, two, code, verifier, redirect_uri=TEST_REDIRECT + "2")
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_grant",
        "error_description": (
            "The redirect_uri does not match the one sent in the authorization request."
        ),
    }


def test_wrong_pkce_verifier(client, user, web_client):
    """A verifier that does not hash to the challenge: invalid_grant."""
    _, params = pkce_params(web_client)
    code = get_code(client, user, params)
    r = exchange(client, web_client, code, "x" * 64)
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_grant",
        "error_description": (
            "The code_verifier does not match the code_challenge of the authorization request "
            "(PKCE)."
        ),
    }


def test_missing_pkce_verifier(client, user, web_client):
    """A challenge was sent but the token request has no verifier: invalid_request."""
    _, params = pkce_params(web_client)
    code = get_code(client, user, params)
    r = exchange(client, web_client, code, verifier=None)
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_request",
        "error_description": (
            "The 'code_verifier' parameter is required: send the PKCE verifier whose S256 hash "
            "was the code_challenge."
        ),
    }


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
        "error_description": (
            "The authorization code has expired; start a new authorization request."
        ),
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
        "error_description": (
            "The 'redirect_uri' parameter is required unless the client has exactly one "
            "registered redirect URI."
        ),
    }


def test_omitted_redirect_uri_with_one_registered_uses_it(client, web_client):
    """With exactly one registered redirect URI, omitting it is allowed (it is the default)."""
    query = auth_params(web_client)
    del query["redirect_uri"]
    r = client.get("/oauth/auth?" + urlencode(query))
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/auth/login?")


# --- every error explains itself --------------------------------------------------------

# A sentence for a person: a capital, words, a final period; never a Python list.
SENTENCE = re.compile(r"^[A-Z][^\[\]]+\.$")
FORM_ONLY = (
    "This endpoint takes application/x-www-form-urlencoded, not {}; send the parameters as a "
    "form (curl -d name=value or --data-urlencode name=value)."
)
GRANT_TYPES = (
    "use authorization_code, refresh_token, client_credentials or "
    "urn:ietf:params:oauth:grant-type:device_code."
)
NO_CREDENTIALS = (
    "The client did not authenticate: send its client_id and client_secret with HTTP Basic "
    "auth or as the client_id and client_secret form fields"
)
PUBLIC_NEEDS_SECRET = (
    "This endpoint needs a confidential client: a public client has no secret to authenticate with."
)


def assert_sentence(description: object) -> None:
    assert isinstance(description, str), description
    assert SENTENCE.match(description), description
    assert "', '" not in description and "['" not in description, description
    assert len(description.split()) >= 4, description


def _set_code_expiry(app, code: str, expires_at: int) -> None:
    from auth_server.extensions import db
    from auth_server.models import AuthorizationCode, sha256_hex

    with app.app_context():
        db.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == sha256_hex(code))
            .values(expires_at=expires_at)
        )
        db.session.commit()


def _expire_refresh_token(app, refresh_token: str) -> None:
    from auth_server.extensions import db
    from auth_server.models import Token, sha256_hex

    with app.app_context():
        db.session.execute(
            update(Token)
            .where(Token.refresh_token_hash == sha256_hex(refresh_token))
            .values(refresh_expires_at=int(time.time()) - 5)
        )
        db.session.commit()


def test_every_token_endpoint_error_explains_itself(auth_app, client, flow, user, web_client):
    """Walk every error the token, revocation and introspection endpoints can be made to
    give: each has exactly the description below, a sentence (never a Python repr)."""
    admin = make_client(
        auth_app, "Admin", redirect_uris=[], grant_types=("client_credentials",), scope="admin"
    )
    spa = make_client(auth_app, "SPA", public=True)
    other = make_client(auth_app, "Other")
    two = make_client(auth_app, "Two URIs", redirect_uris=[TEST_REDIRECT, TEST_REDIRECT + "2"])
    cases: list[tuple[str, object, int, str, str]] = []

    def case(label, response, status, error, description):
        cases.append((label, response, status, error, description))

    post = client.post
    cc = {"grant_type": "client_credentials"}
    # the request itself
    case(
        "no grant_type",
        token_request(client, web_client, {}),
        400,
        "invalid_request",
        f"The 'grant_type' parameter is required; {GRANT_TYPES}",
    )
    case(
        "password grant",
        token_request(client, web_client, {"grant_type": "password"}),
        400,
        "unsupported_grant_type",
        f"The grant_type 'password' is not supported; {GRANT_TYPES}",
    )
    case(
        "implicit grant",
        token_request(client, web_client, {"grant_type": "implicit"}),
        400,
        "unsupported_grant_type",
        f"The grant_type 'implicit' is not supported; {GRANT_TYPES} The implicit flow gets "
        "its token from /oauth/auth with response_type=token.",
    )
    case(
        "unprintable grant",
        token_request(client, web_client, {"grant_type": 'a"\\b'}),
        400,
        "unsupported_grant_type",
        f"This grant_type is not supported; {GRANT_TYPES}",
    )
    case(
        "JSON body",
        post("/oauth/token", json=cc, headers=admin.basic()),
        400,
        "invalid_request",
        FORM_ONLY.format("application/json"),
    )
    case(
        "text body",
        post(
            "/oauth/token",
            data="grant_type=client_credentials",
            content_type="text/plain",
            headers=admin.basic(),
        ),
        400,
        "invalid_request",
        FORM_ONLY.format("text/plain"),
    )
    # client authentication
    case(
        "no credentials", post("/oauth/token", data=cc), 401, "invalid_client", NO_CREDENTIALS + "."
    )
    case(
        "no credentials, code",
        post("/oauth/token", data={"grant_type": "authorization_code"}),
        401,
        "invalid_client",
        NO_CREDENTIALS + "; a public client sends its client_id alone.",
    )
    admin_wrong = {"Authorization": basic_header(admin.client_id, "wrong")}
    case(
        "wrong secret",
        post("/oauth/token", data=cc, headers=admin_wrong),
        401,
        "invalid_client",
        WRONG_SECRET["error_description"],
    )
    case(
        "unknown client",
        post("/oauth/token", data=cc, headers={"Authorization": basic_header("nobody", "x")}),
        401,
        "invalid_client",
        "The client does not exist on this server.",
    )
    case(
        "malformed Basic",
        post("/oauth/token", data=cc, headers={"Authorization": "Basic not-base64!"}),
        401,
        "invalid_client",
        "The Authorization header is not valid HTTP Basic credentials: send the base64 of "
        "client_id:client_secret, each form-urlencoded.",
    )
    case(
        "confidential without secret",
        post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": "c",
                "client_id": web_client.client_id,
            },
        ),
        401,
        "invalid_client",
        "This client is confidential: send its client_secret too, with HTTP Basic auth or as "
        "the client_id and client_secret form fields.",
    )
    case(
        "public client, secret endpoint",
        post("/oauth/token", data={**cc, "client_id": spa.client_id}),
        401,
        "invalid_client",
        PUBLIC_NEEDS_SECRET,
    )
    case(
        "public client sending a secret",
        post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": "c",
                "client_id": spa.client_id,
                "client_secret": "s",
            },
        ),
        401,
        "invalid_client",
        "This client is public and has no secret: send its client_id alone, with PKCE.",
    )
    case(
        "grant not registered",
        token_request(client, web_client, cc),
        400,
        "unauthorized_client",
        "This client is not registered for grant_type=client_credentials.",
    )
    case(
        "unknown scope",
        token_request(client, admin, {**cc, "scope": "telepathy"}),
        400,
        "invalid_scope",
        "The scope 'telepathy' is unknown; this server offers call, admin, introspect, dialer, openid, profile and email.",
    )
    case(
        "scope not registered",
        token_request(client, admin, {**cc, "scope": "call"}),
        400,
        "invalid_scope",
        "This client may not ask for the scope 'call'; it is registered for admin.",
    )
    # authorization codes
    code_grant = {"grant_type": "authorization_code", "redirect_uri": TEST_REDIRECT}
    case(
        "no code",
        token_request(client, web_client, code_grant),
        400,
        "invalid_request",
        "The 'code' parameter is required with grant_type=authorization_code.",
    )
    case(
        "unknown code",
        exchange(client, web_client, "made-up", "v" * 43),
        400,
        "invalid_grant",
        "The authorization code is unknown: this server never issued it, or it was cut short.",
    )
    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    case(
        "another client's code",
        exchange(client, other, code, verifier),
        400,
        "invalid_grant",
        "The authorization code was issued to another client.",
    )
    case(
        "no verifier",
        exchange(client, web_client, code, None),
        400,
        "invalid_request",
        "The 'code_verifier' parameter is required: send the PKCE verifier whose S256 hash was "
        "the code_challenge.",
    )
    case(
        "used, nothing issued",
        exchange(client, web_client, code, verifier),
        400,
        "invalid_grant",
        "The authorization code was already used; a code can be redeemed only once, start a "
        "new authorization request.",
    )
    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    case(
        "malformed verifier",
        exchange(client, web_client, code, "short"),
        400,
        "invalid_request",
        "The code_verifier is malformed: it must be 43 to 128 characters of A-Z, a-z, 0-9 and "
        "- . _ ~.",
    )
    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    case(
        "wrong verifier",
        exchange(client, web_client, code, "x" * 64),
        400,
        "invalid_grant",
        "The code_verifier does not match the code_challenge of the authorization request (PKCE).",
    )
    code = get_code(client, user, auth_params(web_client))  # no PKCE: a confidential client
    case(
        "verifier without challenge",
        exchange(client, web_client, code, "v" * 43),
        400,
        "invalid_request",
        "The authorization request had no 'code_challenge', but a 'code_verifier' was provided.",
    )
    verifier, params = pkce_params(two)
    code = get_code(client, user, params)
    case(
        "redirect_uri mismatch",
        exchange(client, two, code, verifier, redirect_uri=TEST_REDIRECT + "2"),
        400,
        "invalid_grant",
        "The redirect_uri does not match the one sent in the authorization request.",
    )
    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    assert exchange(client, web_client, code, verifier).status_code == 200
    case(
        "replayed code",
        exchange(client, web_client, code, verifier),
        400,
        "invalid_grant",
        "The authorization code was already used; the tokens issued from it are revoked.",
    )
    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    _set_code_expiry(auth_app, code, int(time.time()) - 5)
    case(
        "expired code",
        exchange(client, web_client, code, verifier),
        400,
        "invalid_grant",
        "The authorization code has expired; start a new authorization request.",
    )
    # refresh tokens
    refresh = {"grant_type": "refresh_token"}
    case(
        "no refresh_token",
        token_request(client, web_client, refresh),
        400,
        "invalid_request",
        "The 'refresh_token' parameter is required with grant_type=refresh_token.",
    )
    case(
        "unknown refresh token",
        token_request(client, web_client, {**refresh, "refresh_token": "made-up"}),
        400,
        "invalid_grant",
        "The refresh token is unknown: this server never issued it.",
    )
    tokens = flow.token(user, web_client)
    case(
        "another client's refresh token",
        token_request(client, other, {**refresh, "refresh_token": tokens["refresh_token"]}),
        400,
        "invalid_grant",
        "The refresh token was issued to another client.",
    )
    case(
        "wider scope",
        token_request(
            client,
            web_client,
            {**refresh, "refresh_token": tokens["refresh_token"], "scope": "call admin"},
        ),
        400,
        "invalid_scope",
        "The requested scope is wider than the scope originally granted; ask for part of it, "
        "or leave scope out to keep all of it.",
    )
    assert (
        token_request(
            client, web_client, {**refresh, "refresh_token": tokens["refresh_token"]}
        ).status_code
        == 200
    )
    case(
        "reused refresh token",
        token_request(client, web_client, {**refresh, "refresh_token": tokens["refresh_token"]}),
        400,
        "invalid_grant",
        "The refresh token was already used; every token of this grant is revoked.",
    )
    case(
        "revoked refresh token",
        token_request(client, web_client, {**refresh, "refresh_token": tokens["refresh_token"]}),
        400,
        "invalid_grant",
        "The refresh token has been revoked.",
    )
    tokens = flow.token(user, web_client)
    _expire_refresh_token(auth_app, tokens["refresh_token"])
    case(
        "expired refresh token",
        token_request(client, web_client, {**refresh, "refresh_token": tokens["refresh_token"]}),
        400,
        "invalid_grant",
        "The refresh token has expired; start a new authorization request.",
    )
    # revocation and introspection
    for path in ("/oauth/revoke", "/oauth/introspect"):
        case(
            f"{path} no token",
            post(path, data={}, headers=web_client.basic()),
            400,
            "invalid_request",
            "The 'token' parameter is required.",
        )
        case(
            f"{path} bad hint",
            post(
                path, data={"token": "t", "token_type_hint": "id_token"}, headers=web_client.basic()
            ),
            401,
            "unsupported_token_type",
            "The token_type_hint must be access_token or refresh_token.",
        )
        case(
            f"{path} JSON",
            post(path, json={"token": "t"}, headers=web_client.basic()),
            400,
            "invalid_request",
            FORM_ONLY.format("application/json"),
        )
        case(
            f"{path} wrong secret",
            post(path, data={"token": "t"}, headers=admin_wrong),
            401,
            "invalid_client",
            WRONG_SECRET["error_description"],
        )
    case(
        "revoke without credentials",
        post("/oauth/revoke", data={"token": "t"}),
        401,
        "invalid_client",
        NO_CREDENTIALS + "; a public client sends its client_id alone.",
    )
    case(
        "introspect without credentials",
        post("/oauth/introspect", data={"token": "t"}),
        401,
        "invalid_client",
        NO_CREDENTIALS + ".",
    )
    case(
        "introspect by a public client",
        post("/oauth/introspect", data={"token": "t", "client_id": spa.client_id}),
        401,
        "invalid_client",
        PUBLIC_NEEDS_SECRET,
    )

    for label, r, status, error, description in cases:
        assert (r.status_code, r.json) == (
            status,
            {"error": error, "error_description": description},
        ), label
        assert_sentence(r.json["error_description"])
        assert r.headers["Cache-Control"] == "no-store", label
        if status == 401 and error == "invalid_client":
            assert r.headers["WWW-Authenticate"] == (
                f'Basic error="invalid_client", error_description="{description}"'
            ), label
    assert len(cases) == 46


def test_authorization_errors_are_sentences(auth_app, client, web_client):
    """The authorization endpoint's errors, shown here or sent to the client, are sentences."""
    spa = make_client(auth_app, "SPA", public=True)
    code_only = make_client(auth_app, "Code only")
    shown = [
        {**auth_params(web_client), "client_id": ""},
        {**auth_params(web_client), "client_id": "nobody"},
        {**auth_params(web_client), "redirect_uri": "https://attacker.example/cb"},
    ]
    for query in shown:
        assert_sentence(_error_page(client, query).json["error_description"])
    redirected = {
        "unsupported_response_type": (
            auth_params(web_client, response_type="bogus"),
            "The response_type 'bogus' is not supported; use code, token, id_token or "
            "'id_token token'.",
        ),
        "unauthorized_client": (
            auth_params(code_only, response_type="token"),
            "This client is not registered for response_type=token.",
        ),
        "invalid_request": (
            auth_params(spa),
            "Public clients must send a PKCE 'code_challenge' with method S256.",
        ),
    }
    for error, (query, description) in redirected.items():
        r = client.get("/oauth/auth?" + urlencode(query), headers=JSON)
        assert r.status_code == 302, error
        location = r.headers["Location"]
        result = query_of(location.replace("#", "?", 1) if "#" in location else location)
        assert result == {
            "error": error,
            "error_description": description,
            "state": "st4te",
            "iss": ISSUER,
        }
        assert_sentence(description)
    _, query = pkce_params(web_client)
    query["code_challenge"] = "short"
    assert _redirected_error(client, query)["error_description"] == (
        "The code_challenge is malformed: an S256 challenge is the 43-character base64url "
        "SHA-256 hash of the code_verifier."
    )
    query.update(code_challenge="", code_challenge_method="S256")
    assert _redirected_error(client, query)["error_description"] == (
        "A code_challenge_method was sent without a code_challenge."
    )


def test_unprintable_scope_is_not_echoed(client, web_client):
    """A scope that may not appear in an error description is described without it."""
    result = _redirected_error(client, auth_params(web_client, scope="call t\u00e9l\u00e9"))
    assert result["error_description"] == (
        "The requested scope names scopes this server does not offer; "
        "this server offers call, admin, introspect, dialer, openid, profile and email."
    )


# --- form endpoints are told about a JSON body -------------------------------------------


def test_json_body_to_the_login_form(client, user):
    """POST /auth/login with JSON: 400 invalid_request naming the form encoding, as JSON
    for JSON clients and as the error page for browsers; nobody is signed in."""
    r = client.post(
        "/auth/login", json={"username": user.username, "password": user.password}, headers=JSON
    )
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_request",
        "error_description": FORM_ONLY.format("application/json"),
    }
    r = client.post(
        "/auth/login", json={"username": user.username, "password": user.password}, headers=HTML
    )
    assert r.status_code == 400
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert (
        "<strong>invalid_request</strong>: This endpoint takes application/x-www-form-urlencoded"
        in html
    )
    with client.session_transaction() as sess:
        assert "uid" not in sess


def test_json_body_to_the_consent_form(client, user, web_client):
    """POST /auth/grant with JSON is told the same, before the CSRF check."""
    _, params = pkce_params(web_client)
    r = client.post("/auth/grant", json={**params, "grant": "true"}, headers=JSON)
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert r.json == {
        "error": "invalid_request",
        "error_description": FORM_ONLY.format("application/json"),
    }


def test_body_without_content_type_to_the_token_endpoint(client, admin_client):
    """A body with no Content-Type at all is told what to send too."""
    r = client.post(
        "/oauth/token",
        data=b"grant_type=client_credentials",
        headers={**admin_client.basic(), "Content-Type": ""},
    )
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_request",
        "error_description": (
            "This endpoint takes application/x-www-form-urlencoded, and this body has no "
            "Content-Type; send the parameters as a form (curl -d name=value or "
            "--data-urlencode name=value)."
        ),
    }


# --- CSRF: one check for every form --------------------------------------------------------

CSRF_FAILED = {
    "error": "invalid_request",
    "error_description": (
        "The form is stale or was not sent by this site (CSRF check failed); reload it."
    ),
}


@pytest.mark.parametrize("path", ["/auth/login", "/auth/grant"])
def test_every_form_post_needs_the_csrf_token(client, user, path):
    """Login and consent POSTs without the session's CSRF token: 400, nobody signed in."""
    ensure_csrf(client)
    data = {"username": user.username, "password": user.password, "grant": "true"}
    r = client.post(path, data=data, headers=JSON)
    assert (r.status_code, r.json) == (400, CSRF_FAILED)
    r = client.post(path, data={**data, "csrf_token": "forged"}, headers=JSON)
    assert (r.status_code, r.json) == (400, CSRF_FAILED)
    with client.session_transaction() as sess:
        assert "uid" not in sess


def test_signed_out_logout_needs_no_csrf_token(client):
    """Logging out of no session has nothing to protect: 200."""
    r = client.post("/auth/logout", headers=JSON)
    assert (r.status_code, r.json) == (200, {"status": "signed_out"})


# --- a throttled login says when to retry -------------------------------------------------

NOW = 1_900_000_000.0


@pytest.fixture
def throttled_app(databases, keys_dir, monkeypatch):
    """Login limited to 2 failures per minute per username, on a clock that stands still
    (so the seconds in the page and in ``Retry-After`` are exact)."""
    from auth_server import create_app
    from tests.conftest import _prepare, auth_config

    app = create_app(
        auth_config(
            databases,
            keys_dir,
            RATELIMIT_ENABLED=True,
            RATELIMIT_STORAGE_URI="memory://",
            LOGIN_LIMIT_PER_USERNAME="2 per minute",
        )
    )
    _prepare(app, "auth", databases.auth_url)
    monkeypatch.setattr(time, "time", lambda: NOW)
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        app.extensions["sqlalchemy"].engine.dispose()


def test_throttled_login_says_when_to_retry(throttled_app):
    """The third failure within the minute: 429 with Retry-After and the same number of
    seconds in a sentence, as JSON and on the HTML page."""
    victim = make_user(throttled_app, "victim", "victim-password")
    client = throttled_app.test_client()
    data = {"username": victim.username, "password": "guess"}
    for _ in range(2):
        r = client.post(
            "/auth/login", data={**data, "csrf_token": ensure_csrf(client)}, headers=JSON
        )
        assert r.status_code == 401, r.get_data(as_text=True)
    r = client.post("/auth/login", data={**data, "csrf_token": ensure_csrf(client)}, headers=JSON)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "61"
    assert r.json == {
        "error": "too_many_requests",
        "error_description": "Too many attempts; try again in 61 seconds.",
    }
    r = client.post("/auth/login", data={**data, "csrf_token": ensure_csrf(client)}, headers=HTML)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "61"
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert '<h1 id="page-title">Too many attempts</h1>' in html
    assert '<p class="error" role="alert">Too many attempts; try again in 61 seconds.</p>' in html
