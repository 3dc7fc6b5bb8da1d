"""OpenID Connect: ID tokens (code and implicit flows), userinfo, discovery, prompt and
max_age, RP-initiated logout, RFC 9207 ``iss``, and the user and client fields behind them.

ID tokens are verified with joserfc against the published JWKS (not with the PyJWT that
signs them); ``at_hash`` is computed here independently.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc9207 import AuthorizationServerMetadata as IssuerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata
from authlib.oidc.rpinitiated import OpenIDProviderMetadata as LogoutMetadata

from tests.auth_server.helpers import (
    JSON,
    auth_params,
    ensure_csrf,
    pkce_params,
    sign_in,
    token_request,
    verify_access_token,
)
from tests.auth_server.oidc_helpers import (
    LOGGED_OUT,
    OIDC_SCOPE,
    authorize,
    code_tokens,
    half_hash,
    logout,
    make_oidc_client,
    new_nonce,
    redirect_params,
    set_profile,
    sign_in_age,
    signed_in,
    userinfo,
    verify_id_token,
)
from tests.conftest import ISSUER, TEST_REDIRECT, make_client

PROFILE = {
    "name": "Alice Liddell",
    "preferred_username": "alice",
    "email": "alice@example.com",
    "email_verified": True,
}


def test_code_flow_id_token_and_userinfo(auth_app, client, user):
    """scope=openid: the token response carries a signed ID token (the keyring's key, its
    kid) for this client and user, with the nonce, auth_time and a correct at_hash; the
    access token keeps its claims; userinfo answers the profile and email claims (GET with
    a Bearer header, POST with a form body), and only those of the granted scopes."""
    app_client = make_oidc_client(auth_app)
    set_profile(auth_app, user, "Alice Liddell", "alice@Example.COM", True)
    nonce = new_nonce()
    before = int(time.time())
    tokens, _ = code_tokens(client, user, app_client, nonce=nonce)
    assert set(tokens) == {
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "refresh_token",
        "id_token",
    }
    assert tokens["scope"] == OIDC_SCOPE
    header, claims = verify_id_token(client, tokens["id_token"], app_client.client_id)
    with auth_app.app_context():
        from auth_server.tokens import keyring

        key = keyring().current()
    assert header == {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
    auth_time = claims.pop("auth_time")
    assert before - 1 <= auth_time <= claims["iat"]
    assert claims["exp"] - claims["iat"] == 3600  # AUTH_ID_TOKEN_TTL
    assert claims == {
        "iss": ISSUER,
        "sub": user.id,
        "aud": app_client.client_id,
        "iat": claims["iat"],
        "exp": claims["exp"],
        "nonce": nonce,
        "at_hash": half_hash(tokens["access_token"]),
    }  # profile and email claims come from userinfo: an access token was issued

    access = verify_access_token(client, tokens["access_token"])
    assert set(access) == {
        "iss",
        "sub",
        "aud",
        "client_id",
        "scope",
        "iat",
        "exp",
        "jti",
        "grant_id",
        "username",
    }
    assert (access["sub"], access["scope"]) == (user.id, OIDC_SCOPE)

    for method in ("GET", "POST"):
        r = userinfo(client, tokens["access_token"], method)
        assert (r.status_code, r.json) == (200, {"sub": user.id, **PROFILE}), method
        assert r.headers["Cache-Control"] == "no-store"

    tokens, _ = code_tokens(client, user, app_client, scope="openid")
    assert tokens["scope"] == "openid"
    assert userinfo(client, tokens["access_token"]).json == {"sub": user.id}
    tokens, _ = code_tokens(client, user, app_client, scope="openid email")
    assert userinfo(client, tokens["access_token"]).json == {
        "sub": user.id,
        "email": "alice@example.com",
        "email_verified": True,
    }
    tokens, _ = code_tokens(client, user, app_client, scope="call")
    assert "id_token" not in tokens  # plain OAuth: no ID token


def test_implicit_id_token_flows(auth_app, client, user):
    """response_type=id_token: the ID token alone, in the fragment, carrying the profile and
    email claims (there is no access token to ask userinfo with); id_token token: both, the
    ID token binding the access token by at_hash. nonce is required; openid too."""
    app_client = make_oidc_client(auth_app)
    set_profile(auth_app, user, "Alice Liddell", "alice@example.com", True)
    nonce = new_nonce()
    params = auth_params(app_client, "id_token", scope="openid profile email", nonce=nonce)
    r, result = authorize(client, user, params)
    assert r.headers["Location"].startswith(TEST_REDIRECT + "#")
    assert r.headers["Cache-Control"] == "no-store"
    assert set(result) == {"id_token", "expires_in", "scope", "state", "iss"}
    assert (result["state"], result["iss"]) == ("st4te", ISSUER)
    _, claims = verify_id_token(client, result["id_token"], app_client.client_id)
    assert {k: claims[k] for k in ("sub", "nonce", *PROFILE)} == {
        "sub": user.id,
        "nonce": nonce,
        **PROFILE,
    }
    assert "at_hash" not in claims and claims["auth_time"] <= claims["iat"]

    params = auth_params(app_client, "id_token token", scope="openid profile", nonce=new_nonce())
    _, result = authorize(client, user, params)
    assert set(result) == {
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "id_token",
        "state",
        "iss",
    }
    _, claims = verify_id_token(client, result["id_token"], app_client.client_id)
    assert claims["at_hash"] == half_hash(result["access_token"])
    assert claims["nonce"] == params["nonce"] and "name" not in claims
    assert userinfo(client, result["access_token"]).json == {
        "sub": user.id,
        "name": "Alice Liddell",
        "preferred_username": "alice",
    }

    for extra, error, description in (
        (
            {"scope": "openid"},
            "invalid_request",
            "The 'nonce' parameter is required with response_type id_token or 'id_token token'.",
        ),
        (
            {"scope": "call", "nonce": "n"},
            "invalid_scope",
            "response_type id_token and 'id_token token' need the 'openid' scope.",
        ),
        (
            {"scope": "openid", "nonce": "n", "response_mode": "query"},
            "invalid_request",
            "This response_type is answered in the fragment only.",
        ),
    ):
        query = {**auth_params(app_client, "id_token"), **extra}
        r = client.get("/oauth/auth?" + urlencode(query))
        assert r.status_code == 302
        assert r.headers["Location"].startswith(TEST_REDIRECT + "#error=")
        assert redirect_params(r.headers["Location"]) == {
            "error": error,
            "error_description": description,
            "state": "st4te",
            "iss": ISSUER,
        }


def test_discovery_documents(app_with):
    """/.well-known/openid-configuration: the RFC 8414 document, field for field, valid
    OpenID Provider Metadata (Discovery, RP-Initiated Logout, RFC 9207)."""
    app = app_with(AUTH_ISSUER="https://auth.example.com")
    client = app.test_client()
    r = client.get("/.well-known/openid-configuration")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "public, max-age=300"
    data = r.json
    assert data == client.get("/.well-known/oauth-authorization-server").json
    metadata = OpenIDProviderMetadata(data)
    metadata.validate(metadata_classes=[LogoutMetadata, IssuerMetadata])
    AuthorizationServerMetadata(data).validate()
    issuer = "https://auth.example.com"
    assert (data["userinfo_endpoint"], data["end_session_endpoint"]) == (
        f"{issuer}/oauth/userinfo",
        f"{issuer}/oauth/logout",
    )
    assert {"openid", "profile", "email"} <= set(data["scopes_supported"])
    assert {"code", "id_token", "id_token token"} <= set(data["response_types_supported"])
    assert data["id_token_signing_alg_values_supported"] == ["RS256"]
    assert data["authorization_response_iss_parameter_supported"] is True


def test_prompt_and_max_age(auth_app, client, user):
    """prompt=none never shows a page (login_required, consent_required, redirected with
    state and iss); prompt=login signs in again even when signed in, and then goes on;
    prompt=consent shows the consent page though remembered; max_age forces a sign-in when
    the last one is older, and the ID token's auth_time says when it was."""
    app_client = make_oidc_client(auth_app)

    def refused(error, **extra):
        _, params = pkce_params(app_client, scope="openid", **extra)
        r = client.get("/oauth/auth?" + urlencode(params))
        assert r.status_code == 302
        result = redirect_params(r.headers["Location"])
        assert set(result) == {"error", "error_description", "state", "iss"}
        assert (result["error"], result["state"], result["iss"]) == (error, "st4te", ISSUER)
        return result["error_description"]

    assert refused("login_required", prompt="none") == (
        "prompt=none was sent, but the user must sign in first (not signed in, or the "
        "sign-in is older than max_age)."
    )
    assert sign_in(client, user).status_code == 200
    assert refused("consent_required", prompt="none") == (
        "prompt=none was sent, but the user has not yet authorized this application for "
        "the requested scope."
    )
    tokens, _ = code_tokens(client, user, app_client, scope="openid")  # consent remembered
    tokens, result = code_tokens(client, user, app_client, scope="openid", prompt="none")
    assert set(result) == {"code", "state", "iss"}

    _, params = pkce_params(app_client, scope="openid", prompt="consent")
    r = client.get("/oauth/auth?" + urlencode(params))
    assert (r.status_code, r.headers["Location"]) == (303, "/auth/grant?" + urlencode(params))

    for prompt in ("login", "select_account"):
        signed_in_at = sign_in_age(auth_app, user, 100)
        _, params = pkce_params(app_client, scope="openid", prompt=prompt)
        r = client.get("/oauth/auth?" + urlencode(params))
        assert (r.status_code, r.headers["Location"]) == (302, "/auth/login?" + urlencode(params))
        r = client.get("/auth/login?" + urlencode(params), headers=JSON)
        assert r.status_code == 200 and r.json["prompt"] == prompt  # the form, not onwards
        tokens, _ = code_tokens(client, user, app_client, scope="openid", prompt=prompt)
        _, claims = verify_id_token(client, tokens["id_token"], app_client.client_id)
        assert claims["auth_time"] > signed_in_at  # signed in again, once

    signed_in_at = sign_in_age(auth_app, user, 100)
    tokens, _ = code_tokens(client, user, app_client, scope="openid", max_age="500")
    _, claims = verify_id_token(client, tokens["id_token"], app_client.client_id)
    assert claims["auth_time"] == signed_in_at  # recent enough: no sign-in
    assert refused("login_required", prompt="none", max_age="50")
    _, params = pkce_params(app_client, scope="openid", max_age="50")
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.headers["Location"] == "/auth/login?" + urlencode(params)
    tokens, _ = code_tokens(client, user, app_client, scope="openid", max_age="50")
    _, claims = verify_id_token(client, tokens["id_token"], app_client.client_id)
    assert claims["auth_time"] > signed_in_at

    assert refused("invalid_request", prompt="none login") == (
        "prompt=none cannot be combined with other prompt values."
    )
    assert refused("invalid_request", prompt="bogus") == (
        "The prompt value is not supported; use none, login, consent or select_account."
    )
    assert refused("invalid_request", max_age="-1") == (
        "The max_age parameter must be a whole number of seconds."
    )
    assert refused("request_not_supported", request="eyJ.x.y") == (
        "Request objects (the 'request' parameter) are not supported; send the parameters "
        "themselves."
    )


def test_consent_refusal_and_errors_carry_iss(auth_app, client, user):
    """RFC 9207: the consent page's refusal and an error straight from the authorization
    endpoint name this server too, in the query (code) or the fragment (implicit)."""
    app_client = make_oidc_client(auth_app)
    _, params = pkce_params(app_client, scope="openid")
    assert sign_in(client, user, **params).status_code == 303
    r = client.post(
        "/auth/grant", data={**params, "grant": "false", "csrf_token": ensure_csrf(client)}
    )
    assert r.status_code == 302
    assert r.headers["Location"].startswith(TEST_REDIRECT + "?error=access_denied")
    assert redirect_params(r.headers["Location"])["iss"] == ISSUER
    nonce = new_nonce()
    params = auth_params(app_client, "id_token", scope="openid", nonce=nonce)
    assert client.get("/oauth/auth?" + urlencode(params)).status_code == 303
    r = client.post(
        "/auth/grant", data={**params, "grant": "false", "csrf_token": ensure_csrf(client)}
    )
    assert r.headers["Location"].startswith(TEST_REDIRECT + "#error=access_denied")
    assert redirect_params(r.headers["Location"])["iss"] == ISSUER


def test_rp_initiated_logout(auth_app, client, user, monkeypatch):
    """With a valid id_token_hint (an expired one too) the session ends and the browser goes
    to the registered post_logout_redirect_uri with the state; without one the user is
    asked first (a POST with the CSRF token), and there is no redirect."""
    app_client = make_oidc_client(auth_app)
    tokens, _ = code_tokens(client, user, app_client, scope="openid")
    hint = tokens["id_token"]
    r = logout(client, id_token_hint=hint, post_logout_redirect_uri=LOGGED_OUT, state="bye 1")
    assert r.status_code == 302
    assert r.headers["Location"] == LOGGED_OUT + "?state=bye+1"
    assert r.headers["Cache-Control"] == "no-store"
    assert not signed_in(client)

    monkeypatch.setitem(auth_app.config, "AUTH_ID_TOKEN_TTL", -60)  # minted expired
    tokens, _ = code_tokens(client, user, app_client, scope="openid")
    monkeypatch.setitem(auth_app.config, "AUTH_ID_TOKEN_TTL", 3600)
    r = logout(
        client,
        "POST",
        id_token_hint=tokens["id_token"],
        client_id=app_client.client_id,
        post_logout_redirect_uri=LOGGED_OUT,
    )
    assert (r.status_code, r.headers["Location"]) == (302, LOGGED_OUT)  # expired: accepted
    assert not signed_in(client)

    assert sign_in(client, user).status_code == 200
    params = {"client_id": app_client.client_id, "post_logout_redirect_uri": LOGGED_OUT}
    r = logout(client, **params)
    assert (r.status_code, r.json["status"]) == (200, "confirmation_required")
    assert r.json["username"] == "alice" and r.json["client_name"] == "OIDC app"
    assert signed_in(client)
    page = client.get("/oauth/logout?" + urlencode(params))
    assert b"Sign out?" in page.data and b'name="confirm" value="yes"' in page.data
    r = logout(client, "POST", confirm="yes", csrf_token="forged", **params)
    assert (r.status_code, r.json["error"]) == (400, "invalid_request")
    assert signed_in(client)
    r = logout(client, "POST", confirm="yes", csrf_token=ensure_csrf(client), **params)
    assert (r.status_code, r.json) == (200, {"status": "signed_out"})
    assert "Location" not in r.headers
    assert not signed_in(client)


def test_client_credentials_never_get_openid(auth_app, client):
    """openid is a person's scope: refused at registration for a client_credentials client
    alone, and never in a client_credentials token."""
    from auth_server.clients import create_client
    from shared.errors import InvalidRequest

    with auth_app.app_context(), pytest.raises(InvalidRequest) as refused:
        create_client("Robot", [], grant_types=["client_credentials"], scope="openid")
    assert refused.value.description == (
        "A client_credentials client acts for no person, so it cannot get openid; register "
        "it with --scope admin (or introspect)."
    )
    both = make_client(
        auth_app,
        "Both",
        grant_types=("authorization_code", "client_credentials"),
        scope="admin openid",
        allow_admin_for_users=True,
    )
    r = token_request(client, both, {"grant_type": "client_credentials", "scope": "openid"})
    assert (r.status_code, r.json["error"]) == (400, "invalid_scope")
    r = token_request(client, both, {"grant_type": "client_credentials", "scope": "admin"})
    assert r.status_code == 200 and "id_token" not in r.json


def test_cli_user_profile_and_client_logout_uris(cli):
    """users create/update --name --email (--email-verified); clients create/update
    --post-logout-redirect-uri; refusals are one line."""
    result = cli(
        "users",
        "create",
        "carol",
        "--name",
        "Carol  Ann",
        "--email",
        "carol@Example.org",
        "--email-verified",
        "--password-stdin",
        input="carol-password\n",
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(cli("users", "show", "carol").output)
    assert (shown["name"], shown["email"], shown["email_verified"]) == (
        "Carol Ann",
        "carol@example.org",
        True,
    )
    result = cli("users", "update", "carol", "--email", "ann@example.org")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["name"], shown["email"], shown["email_verified"]) == (
        "Carol Ann",
        "ann@example.org",
        False,  # a new address is not verified
    )
    shown = json.loads(cli("users", "update", "carol", "--email-verified", "--name", "").output)
    assert (shown["name"], shown["email_verified"]) == (None, True)
    for args, message in (
        (("--email", "not-an-address"), "'not-an-address' is not an email address"),
        (("--email", "", "--email-verified"), "There is no email address to mark verified."),
    ):
        result = cli("users", "update", "carol", *args)
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert message in result.output

    result = cli(
        "clients",
        "create",
        "--name",
        "RP",
        "--redirect-uri",
        TEST_REDIRECT,
        "--scope",
        "openid",
        "--response-type",
        "code",
        "--response-type",
        "id_token",
        "--post-logout-redirect-uri",
        LOGGED_OUT,
        "--json",
    )
    assert result.exit_code == 0, result.output
    client_id = json.loads(result.output)["client_id"]
    shown = json.loads(cli("clients", "show", client_id).output)
    assert shown["post_logout_redirect_uris"] == [LOGGED_OUT]
    assert shown["response_types"] == ["code", "id_token"]
    assert shown["grant_types"] == ["authorization_code", "implicit"]
    result = cli("clients", "update", client_id, "--post-logout-redirect-uri", "javascript:x")
    assert result.exit_code == 1
    assert "Post-logout redirect URI 'javascript:x'" in result.output
    result = cli("clients", "update", client_id, "--post-logout-redirect-uri", TEST_REDIRECT)
    assert json.loads(result.output)["post_logout_redirect_uris"] == [TEST_REDIRECT]


def test_console_sets_the_profile(auth_app, client):
    """The operator console's user page sets name, email and whether it is verified."""
    from tests.conftest import make_user

    admin = make_user(auth_app, "root", "root-password", role="admin")
    bob = make_user(auth_app, "bob", "bob-password")
    assert sign_in(client, admin).status_code == 200
    page = client.get(f"/console/users/{bob.id}")
    assert b'name="email"' in page.data
    form = {"csrf_token": ensure_csrf(client), "name": "Bob B", "email": "bob@example.com"}
    r = client.post(f"/console/users/{bob.id}/profile", data={**form, "email_verified": "yes"})
    assert r.status_code == 303
    with auth_app.app_context():
        from auth_server.accounts import find_user

        found = find_user("bob")
        assert (found.name, found.email, found.email_verified) == (
            "Bob B",
            "bob@example.com",
            True,
        )
    r = client.post(f"/console/users/{bob.id}/profile", data={**form, "email": "bob@"})
    assert r.status_code == 400
    assert b"is not an email address" in r.data


def test_a_registered_default_max_age_applies_when_the_request_has_none(auth_app, client, user):
    """OpenID Connect Registration §2: default_max_age is the client's max_age; the
    request's own max_age wins."""
    from auth_server.clients import get_client
    from auth_server.extensions import db

    app_client = make_oidc_client(auth_app)
    code_tokens(client, user, app_client, scope="openid")  # consent remembered
    signed_in_at = sign_in_age(auth_app, user, 100)
    with auth_app.app_context():  # as dynamic registration stores it
        row = get_client(app_client.client_id)
        row.set_client_metadata({**row.client_metadata, "default_max_age": 50})
        db.session.commit()
    _, params = pkce_params(app_client, scope="openid")
    r = client.get("/oauth/auth?" + urlencode(params))
    assert (r.status_code, r.headers["Location"]) == (302, "/auth/login?" + urlencode(params))
    tokens, _ = code_tokens(client, user, app_client, scope="openid", max_age="500")
    _, claims = verify_id_token(client, tokens["id_token"], app_client.client_id)
    assert claims["auth_time"] == signed_in_at  # the request's max_age: recent enough
