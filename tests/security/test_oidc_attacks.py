"""OpenID Connect attacks: nonce replay and mix-up, forged or foreign id_token_hints, open
redirects through logout, silent logout by a link, prompt=none probing, and tokens that
must not open userinfo (no openid, revoked, expired, an ID token, a disabled user)."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from sqlalchemy import update

from tests.auth_server.helpers import auth_params, ensure_csrf, pkce_params, sign_in
from tests.auth_server.oidc_helpers import (
    LOGGED_OUT,
    authorize,
    code_tokens,
    logout,
    make_oidc_client,
    new_nonce,
    redirect_params,
    signed_in,
    userinfo,
    verify_id_token,
)
from tests.conftest import ISSUER, TEST_REDIRECT, bearer, make_user

NONCE_REUSED = (
    "The nonce was used before with this client; send a new random nonce with every "
    "authorization request."
)
HINT_INVALID = "The id_token_hint is not a valid ID token issued by this server."


def test_nonce_replay_is_refused_and_each_token_carries_its_own(auth_app, client, user):
    """A nonce an ID token was issued with cannot be used again by that client (implicit:
    no second ID token; code: no second code); each ID token carries its request's nonce,
    so a relying party comparing it detects an injected or swapped token."""
    app_client = make_oidc_client(auth_app)
    first, second = new_nonce(), new_nonce()
    _, one = authorize(client, user, auth_params(app_client, "id_token", "openid", nonce=first))
    _, two = authorize(client, user, auth_params(app_client, "id_token", "openid", nonce=second))
    for result, nonce in ((one, first), (two, second)):
        assert verify_id_token(client, result["id_token"], app_client.client_id)[1]["nonce"] == (
            nonce
        )
    for response_type, mode in (("id_token", "#"), ("code", "?")):
        _, params = pkce_params(app_client, scope="openid", nonce=first)
        params["response_type"] = response_type
        r = client.get("/oauth/auth?" + urlencode(params))
        assert r.status_code == 302
        assert r.headers["Location"].startswith(f"{TEST_REDIRECT}{mode}error=")
        assert redirect_params(r.headers["Location"]) == {
            "error": "invalid_request",
            "error_description": NONCE_REUSED,
            "state": "st4te",
            "iss": ISSUER,
        }
    tokens, _ = code_tokens(client, user, app_client, scope="openid", nonce=new_nonce())
    assert "id_token" in tokens
    other = make_oidc_client(auth_app, "Other app")  # nonces are per client
    _, result = authorize(client, user, auth_params(other, "id_token", "openid", nonce=first))
    assert "id_token" in result
    r = client.get(
        "/oauth/auth?"
        + urlencode(auth_params(app_client, "id_token", "openid", nonce="bad\nnonce"))
    )
    assert redirect_params(r.headers["Location"])["error_description"] == (
        "The nonce must be 1 to 255 printable ASCII characters."
    )


def test_foreign_forged_and_misused_id_token_hints(auth_app, client, user):
    """A hint issued to another client than client_id, an access token, a tampered or
    unsigned token: 400 on this server's page, never a redirect, the session kept."""
    app_client = make_oidc_client(auth_app)
    other = make_oidc_client(auth_app, "Other", post_logout=("https://other.example/bye",))
    tokens, _ = code_tokens(client, user, app_client, scope="openid")
    hint = tokens["id_token"]
    header, payload, signature = hint.split(".")
    forged = [
        tokens["access_token"],  # a JWT this server signed, but no ID token
        f"{header}.{payload}.{signature[:-4]}AAAA",
        f"{header}.{payload}.",
        "not-a-jwt",
    ]
    for value in forged:
        r = logout(client, id_token_hint=value, post_logout_redirect_uri=LOGGED_OUT)
        assert (r.status_code, r.json) == (
            400,
            {"error": "invalid_request", "error_description": HINT_INVALID},
        ), value
        assert "Location" not in r.headers
    r = logout(
        client,
        id_token_hint=hint,
        client_id=other.client_id,
        post_logout_redirect_uri="https://other.example/bye",
    )
    assert (r.status_code, r.json["error_description"]) == (
        400,
        "The id_token_hint was issued to another client than client_id.",
    )
    r = logout(client, client_id="nobody", post_logout_redirect_uri=LOGGED_OUT)
    assert (r.status_code, r.json["error_description"]) == (
        400,
        "The client_id names no client of this server.",
    )
    assert signed_in(client)
    # A's hint with B's registered URI: the URI is not A's, so no redirect (signed out).
    r = logout(client, id_token_hint=hint, post_logout_redirect_uri="https://other.example/bye")
    assert (r.status_code, r.json) == (200, {"status": "signed_out"})
    assert "Location" not in r.headers and not signed_in(client)


def test_logout_never_redirects_to_an_unregistered_uri(auth_app, client, user):
    """Only an exact registered post_logout_redirect_uri is followed: near misses and other
    sites get the signed-out page (no open redirect)."""
    app_client = make_oidc_client(auth_app)
    for uri in (
        "https://evil.example/",
        LOGGED_OUT + "/",
        LOGGED_OUT + "?next=https://evil.example",
        "https://rp.example.evil.example/logged-out",
        "HTTPS://RP.EXAMPLE/logged-out",
        "javascript:alert(1)",
    ):
        tokens, _ = code_tokens(client, user, app_client, scope="openid")
        r = logout(client, id_token_hint=tokens["id_token"], post_logout_redirect_uri=uri)
        assert (r.status_code, r.json) == (200, {"status": "signed_out"}), uri
        assert "Location" not in r.headers


def test_a_logout_link_does_not_sign_anyone_out_silently(auth_app, client, user):
    """Without a hint naming the signed-in user (none, or another user's), the user is asked:
    a link or a cross-site form POST without this session's CSRF token signs nobody out."""
    app_client = make_oidc_client(auth_app)
    mallory = make_user(auth_app, "mallory", "mallory-password")
    tokens, _ = code_tokens(auth_app.test_client(), mallory, app_client, scope="openid")
    mallory_hint = tokens["id_token"]
    assert sign_in(client, user).status_code == 200
    for method, params in (
        ("GET", {}),
        ("POST", {}),
        ("GET", {"id_token_hint": mallory_hint, "post_logout_redirect_uri": LOGGED_OUT}),
        ("POST", {"id_token_hint": mallory_hint, "confirm": "yes", "csrf_token": "x"}),
    ):
        r = logout(client, method, **params)
        assert r.status_code in (200, 400) and "Location" not in r.headers, (method, params)
        assert r.json.get("status") != "signed_out"
        assert signed_in(client)
    r = logout(client, "POST", confirm="yes", csrf_token=ensure_csrf(client))
    assert (r.status_code, r.json) == (200, {"status": "signed_out"})


def test_prompt_none_reveals_nothing(auth_app, client, user):
    """prompt=none answers whether a user is signed in and consented only to the client's
    registered redirect URI, with the error alone: no code, no token, no user; and an
    unregistered redirect URI gets this server's error page, not the answer."""
    app_client = make_oidc_client(auth_app)
    for response_type, extra in (("code", {}), ("id_token", {"nonce": new_nonce()})):
        query = auth_params(app_client, response_type, "openid", prompt="none", **extra)
        r = client.get("/oauth/auth?" + urlencode(query))
        result = redirect_params(r.headers["Location"])
        assert set(result) == {"error", "error_description", "state", "iss"}
        assert result["error"] == "login_required"
        r = client.get(
            "/oauth/auth?" + urlencode({**query, "redirect_uri": "https://evil.example/cb"})
        )
        assert r.status_code == 400 and "Location" not in r.headers
    assert sign_in(client, user).status_code == 200
    query = auth_params(app_client, "id_token", "openid", prompt="none", nonce=new_nonce())
    result = redirect_params(client.get("/oauth/auth?" + urlencode(query)).headers["Location"])
    assert (set(result), result["error"]) == (
        {"error", "error_description", "state", "iss"},
        "consent_required",
    )
    r = client.post(
        "/auth/grant", data={**query, "grant": "true", "csrf_token": ensure_csrf(client)}
    )  # the consent form cannot be forced with prompt=none either
    assert redirect_params(r.headers["Location"])["error"] == "consent_required"


def test_userinfo_refuses_unusable_tokens(auth_app, client, api, user):
    """RFC 6750: no token (no error code), a malformed header, a token without openid
    (insufficient_scope), revoked, expired, an ID token, a disabled user's; the ID token
    is no access token at the call API either."""
    from auth_server.extensions import db
    from auth_server.models import Token

    app_client = make_oidc_client(auth_app)
    r = client.get("/oauth/userinfo")
    assert (r.status_code, r.json["error"]) == (401, "invalid_request")
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="clickcall"'

    def refused(token_or_headers, status, error, description):
        headers = token_or_headers if isinstance(token_or_headers, dict) else None
        r = client.get("/oauth/userinfo", headers=headers or bearer(token_or_headers))
        assert (r.status_code, r.json) == (
            status,
            {"error": error, "error_description": description},
        )
        challenge = f'Bearer realm="clickcall", error="{error}", error_description="{description}"'
        if error == "insufficient_scope":
            challenge += ', scope="openid"'
        assert r.headers["WWW-Authenticate"] == challenge

    refused(
        {"Authorization": "Basic abc"},
        401,
        "invalid_token",
        "The Authorization header must be 'Bearer <token>'.",
    )
    plain, _ = code_tokens(client, user, app_client, scope="call")
    refused(
        plain["access_token"],
        403,
        "insufficient_scope",
        "The userinfo endpoint needs an access token with the 'openid' scope.",
    )
    tokens, _ = code_tokens(client, user, app_client, scope="openid")
    refused(
        tokens["id_token"], 401, "invalid_token", "The access token is not one this server issued."
    )
    assert api.get("/rest/call", headers=bearer(tokens["id_token"])).status_code == 401
    r = client.post(
        "/oauth/userinfo",
        data={"access_token": tokens["access_token"]},
        headers=bearer(tokens["access_token"]),
    )
    assert (r.status_code, r.json["error"]) == (400, "invalid_request")

    expiring, _ = code_tokens(client, user, app_client, scope="openid")
    with auth_app.app_context():
        db.session.execute(update(Token).values(expires_at=int(time.time()) - 1))
        db.session.commit()
    refused(expiring["access_token"], 401, "invalid_token", "The access token has expired.")

    tokens, _ = code_tokens(client, user, app_client, scope="openid")
    r = client.post(
        "/oauth/revoke",
        data={"token": tokens["access_token"]},
        headers={"Authorization": app_client.basic()["Authorization"]},
    )
    assert r.status_code == 200
    refused(tokens["access_token"], 401, "invalid_token", "The access token has been revoked.")

    tokens, _ = code_tokens(client, user, app_client, scope="openid")
    assert userinfo(client, tokens["access_token"]).status_code == 200
    with auth_app.app_context():
        from auth_server.accounts import find_user
        from auth_server.models import utcnow

        find_user(user.username).disabled_at = utcnow()
        db.session.commit()
    refused(
        tokens["access_token"],
        401,
        "invalid_token",
        "The access token's user no longer exists or is disabled.",
    )
