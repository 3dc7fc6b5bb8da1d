"""Issued tokens: JWT format, client credentials, refresh rotation, revocation, introspection."""

from __future__ import annotations

import uuid

import jwt
import pytest

from tests.auth_server.helpers import (
    basic,
    exchange,
    get_code,
    introspect,
    jwks,
    pkce_params,
    token_request,
    verify_access_token,
)
from tests.conftest import AUDIENCE, ISSUER, make_client, make_user

# grant_id: the grant (token family) the token belongs to, named by the revocation feed.
USER_CLAIMS = {
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


def _refresh(client, app_client, refresh_token, auth="basic", **extra):
    return token_request(
        client,
        app_client,
        {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra},
        auth,
    )


def _client_credentials(client, app_client, auth="basic", **extra):
    return token_request(client, app_client, {"grant_type": "client_credentials", **extra}, auth)


# --- the JWT ---------------------------------------------------------------------------


def test_access_token_header(client, flow, user, web_client):
    """The JOSE header is exactly typ at+jwt, alg RS256 and a kid published in the JWKS."""
    token = flow.token(user, web_client)["access_token"]
    header = jwt.get_unverified_header(token)
    kids = [k["kid"] for k in jwks(client)["keys"]]
    assert header == {"typ": "at+jwt", "alg": "RS256", "kid": header["kid"]}
    assert header["kid"] in kids


def test_user_access_token_claims(client, flow, user, web_client):
    """A user token carries iss, sub (user id), aud, client_id, scope, iat, exp, jti, username."""
    token = flow.token(user, web_client)["access_token"]
    claims = verify_access_token(client, token)  # PyJWT, signature checked with the JWKS key
    assert set(claims) == USER_CLAIMS
    assert {k: claims[k] for k in ("iss", "sub", "aud", "client_id", "scope", "username")} == {
        "iss": ISSUER,
        "sub": user.id,
        "aud": AUDIENCE,
        "client_id": web_client.client_id,
        "scope": "call",
        "username": "alice",
    }
    assert claims["exp"] - claims["iat"] == 3600
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert str(uuid.UUID(claims["grant_id"])) == claims["grant_id"]


def test_each_token_has_its_own_jti(client, flow, user, web_client):
    """Two tokens for the same user and client differ in jti."""
    first = verify_access_token(client, flow.token(user, web_client)["access_token"])
    second = verify_access_token(client, flow.token(user, web_client)["access_token"])
    assert first["jti"] != second["jti"]


def test_token_signature_is_checked(client, flow, user, web_client):
    """A token whose payload was altered no longer verifies against the JWKS."""
    token = flow.token(user, web_client)["access_token"]
    head, payload, sig = token.split(".")
    forged_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"call"', b'"admin"')
    ).decode()
    assert forged_payload != payload
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWK(next(k for k in jwks(client)["keys"] if k["kid"] == header["kid"]))
    jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE)  # the original verifies
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{head}.{forged_payload}.{sig}", key, algorithms=["RS256"], audience=AUDIENCE)


# --- client credentials ----------------------------------------------------------------


def test_client_credentials_with_basic_auth(client, admin_client):
    """client_secret_basic: 200, no refresh token, sub = client id, no username, no-store."""
    r = _client_credentials(client, admin_client, "basic", scope="admin")
    assert r.status_code == 200, r.json
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 3600, "admin")
    claims = verify_access_token(client, body["access_token"])
    assert set(claims) == USER_CLAIMS - {"username"}
    assert (claims["sub"], claims["client_id"], claims["scope"]) == (
        admin_client.client_id,
        admin_client.client_id,
        "admin",
    )


def test_client_credentials_with_post_auth(client, admin_client):
    """client_secret_post works the same."""
    r = _client_credentials(client, admin_client, "post", scope="admin")
    assert r.status_code == 200, r.json
    assert r.json["scope"] == "admin"
    assert verify_access_token(client, r.json["access_token"])["sub"] == admin_client.client_id


def test_client_credentials_default_scope_is_the_registered_one(client, admin_client):
    """Without a scope parameter the client gets its registered scope."""
    r = _client_credentials(client, admin_client)
    assert r.status_code == 200, r.json
    assert r.json["scope"] == "admin"


def test_client_credentials_scope_beyond_registration_is_invalid_scope(client, admin_client):
    """Asking for a scope the client is not registered for is invalid_scope."""
    r = _client_credentials(client, admin_client, scope="call")
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_scope",
        "error_description": "This client may not ask for the scope 'call'; it is registered for admin.",
    }


def test_client_credentials_needs_the_grant(client, web_client):
    """A client not registered for client_credentials gets unauthorized_client."""
    r = _client_credentials(client, web_client, scope="call")
    assert r.status_code == 400
    assert r.json == {
        "error": "unauthorized_client",
        "error_description": "This client is not registered for grant_type=client_credentials.",
    }


# --- refresh tokens --------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token(client, flow, user, web_client):
    """A refresh returns a new access token and a new refresh token for the same user."""
    first = flow.token(user, web_client)
    r = _refresh(client, web_client, first["refresh_token"])
    assert r.status_code == 200, r.json
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 3600, "call")
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    claims = verify_access_token(client, body["access_token"])
    assert (claims["sub"], claims["username"], claims["client_id"]) == (
        user.id,
        "alice",
        web_client.client_id,
    )


def test_refresh_with_client_secret_post(client, flow, user, web_client):
    """The refresh grant accepts client_secret_post too."""
    first = flow.token(user, web_client)
    r = _refresh(client, web_client, first["refresh_token"], auth="post")
    assert r.status_code == 200, r.json


def test_public_client_refresh_without_secret(auth_app, client, user):
    """A public client refreshes with its client_id only (auth method none)."""
    spa = make_client(auth_app, "SPA", public=True)
    verifier, params = pkce_params(spa)
    first = exchange(client, spa, get_code(client, user, params), verifier, auth="none").json
    r = _refresh(client, spa, first["refresh_token"], auth="none")
    assert r.status_code == 200, r.json
    assert r.json["refresh_token"] != first["refresh_token"]


def test_reused_refresh_token_is_refused_and_revokes_the_family(client, flow, user, web_client):
    """Reusing a rotated refresh token: invalid_grant, and the new refresh token dies too."""
    first = flow.token(user, web_client)
    second = _refresh(client, web_client, first["refresh_token"]).json

    r = _refresh(client, web_client, first["refresh_token"])
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_grant",
        "error_description": "The refresh token was already used; every token of this grant is revoked.",
    }
    r = _refresh(client, web_client, second["refresh_token"])
    assert r.status_code == 400
    assert r.json["error"] == "invalid_grant"
    # and the access token minted from the rotated refresh token is revoked as well
    r = introspect(client, second["access_token"], web_client)
    assert (r.status_code, r.json) == (200, {"active": False})


def test_refresh_token_of_another_client_is_invalid_grant(auth_app, client, flow, user, web_client):
    """A refresh token only works for the client it was issued to."""
    other = make_client(auth_app, "Other")
    first = flow.token(user, web_client)
    r = _refresh(client, other, first["refresh_token"])
    assert r.status_code == 400
    assert r.json["error"] == "invalid_grant"
    assert _refresh(client, web_client, first["refresh_token"]).status_code == 200


def _admin_and_two_scope_client(auth_app):
    """A user with the admin role, and a client that may ask for call and admin."""
    user = make_user(auth_app, "root", "root-password", role="admin")
    app_client = make_client(auth_app, "Two scopes", scope="call admin", allow_admin_for_users=True)
    return user, app_client


def test_refresh_can_narrow_the_scope(auth_app, client, flow):
    """A refresh may ask for fewer scopes than granted; the new tokens carry only those."""
    user, app_client = _admin_and_two_scope_client(auth_app)
    first = flow.token(user, app_client, scope="call admin")
    assert first["scope"] == "call admin"
    r = _refresh(client, app_client, first["refresh_token"], scope="call")
    assert r.status_code == 200, r.json
    assert r.json["scope"] == "call"
    assert verify_access_token(client, r.json["access_token"])["scope"] == "call"
    # the narrowed grant cannot be widened again
    r = _refresh(client, app_client, r.json["refresh_token"], scope="call admin")
    assert r.status_code == 400
    assert r.json["error"] == "invalid_scope"


def test_refresh_cannot_widen_the_scope(auth_app, client, flow):
    """Asking a refresh for a scope never granted is invalid_scope."""
    user, app_client = _admin_and_two_scope_client(auth_app)
    first = flow.token(user, app_client, scope="call")
    r = _refresh(client, app_client, first["refresh_token"], scope="call admin")
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_scope",
        "error_description": (
            "The requested scope is wider than the scope originally granted; ask for part of "
            "it, or leave scope out to keep all of it."
        ),
    }


def test_refused_widening_does_not_burn_the_refresh_token(auth_app, client, flow):
    """An invalid_scope refresh issues nothing, so the refresh token must still work after it."""
    user, app_client = _admin_and_two_scope_client(auth_app)
    first = flow.token(user, app_client, scope="call")
    assert (
        _refresh(client, app_client, first["refresh_token"], scope="call admin").status_code == 400
    )
    r = _refresh(client, app_client, first["refresh_token"])
    assert r.status_code == 200, r.json
    assert r.json["scope"] == "call"


def test_missing_refresh_token_is_invalid_request(client, web_client):
    """grant_type=refresh_token without refresh_token is invalid_request."""
    r = token_request(client, web_client, {"grant_type": "refresh_token"})
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_request",
        "error_description": "The 'refresh_token' parameter is required with grant_type=refresh_token.",
    }


# --- revocation and introspection ----------------------------------------------------


def test_introspection_of_a_live_access_token(client, flow, user, web_client):
    """RFC 7662: active true with the token's claims."""
    token = flow.token(user, web_client)["access_token"]
    claims = verify_access_token(client, token)
    r = introspect(client, token, web_client)
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    assert r.json == {
        "active": True,
        "token_type": "Bearer",
        "scope": "call",
        "client_id": web_client.client_id,
        "sub": user.id,
        "username": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": claims["iat"],
        "exp": claims["exp"],
        "jti": claims["jti"],
    }


def test_introspection_of_a_client_credentials_token(client, admin_client):
    """A client token: sub is the client id and there is no username."""
    token = _client_credentials(client, admin_client, scope="admin").json["access_token"]
    claims = verify_access_token(client, token)
    r = introspect(client, token, admin_client)
    assert r.json == {
        "active": True,
        "token_type": "Bearer",
        "scope": "admin",
        "client_id": admin_client.client_id,
        "sub": admin_client.client_id,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": claims["iat"],
        "exp": claims["exp"],
        "jti": claims["jti"],
    }


def test_introspection_of_a_live_refresh_token(client, flow, user, web_client):
    """A refresh token introspects as active for its client."""
    refresh = flow.token(user, web_client)["refresh_token"]
    r = introspect(client, refresh, web_client, hint="refresh_token")
    assert r.status_code == 200
    assert r.json["active"] is True
    assert (r.json["client_id"], r.json["sub"], r.json["scope"]) == (
        web_client.client_id,
        user.id,
        "call",
    )


def test_introspection_of_unknown_token(client, web_client):
    """A string this server never issued is simply inactive."""
    r = introspect(client, "not-a-token", web_client)
    assert (r.status_code, r.json) == (200, {"active": False})


def test_introspection_of_another_clients_token_is_inactive(
    auth_app, client, flow, user, web_client
):
    """A (non-admin) client learns nothing about another client's token."""
    other = make_client(auth_app, "Other")
    token = flow.token(user, web_client)["access_token"]
    r = introspect(client, token, other)
    assert (r.status_code, r.json) == (200, {"active": False})


def test_introspection_without_client_auth_is_401(client, flow, user, web_client):
    """Introspection is for authenticated clients: no credentials → 401 invalid_client."""
    token = flow.token(user, web_client)["access_token"]
    r = client.post("/oauth/introspect", data={"token": token})
    assert r.status_code == 401
    assert r.json["error"] == "invalid_client"
    assert r.headers["WWW-Authenticate"].startswith("Basic ")
    assert "active" not in r.json


def test_introspection_with_wrong_secret_is_401(client, flow, user, web_client):
    """A wrong client secret at the introspection endpoint is 401 invalid_client."""
    token = flow.token(user, web_client)["access_token"]
    r = client.post(
        "/oauth/introspect",
        data={"token": token},
        headers=basic(web_client.client_id, "wrong-secret"),
    )
    assert r.status_code == 401
    assert r.json["error"] == "invalid_client"


def test_revoking_the_refresh_token(client, flow, user, web_client):
    """RFC 7009: revoking the refresh token makes it (and its access token) inactive."""
    tokens = flow.token(user, web_client)
    r = client.post(
        "/oauth/revoke",
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        headers=web_client.basic(),
    )
    assert r.status_code == 200
    assert introspect(client, tokens["refresh_token"], web_client).json == {"active": False}
    assert introspect(client, tokens["access_token"], web_client).json == {"active": False}
    r = _refresh(client, web_client, tokens["refresh_token"])
    assert r.status_code == 400
    assert r.json["error"] == "invalid_grant"


def test_revoking_the_access_token(client, flow, user, web_client):
    """Revoking an access token makes introspection report it inactive."""
    tokens = flow.token(user, web_client)
    assert introspect(client, tokens["access_token"], web_client).json["active"] is True
    r = client.post(
        "/oauth/revoke",
        data={"token": tokens["access_token"], "token_type_hint": "access_token"},
        headers=web_client.basic(),
    )
    assert r.status_code == 200
    assert introspect(client, tokens["access_token"], web_client).json == {"active": False}


def test_revoking_without_hint(client, flow, user, web_client):
    """The hint is optional: the server finds the token either way."""
    tokens = flow.token(user, web_client)
    r = client.post(
        "/oauth/revoke", data={"token": tokens["access_token"]}, headers=web_client.basic()
    )
    assert r.status_code == 200
    assert introspect(client, tokens["access_token"], web_client).json == {"active": False}


def test_revoking_another_clients_token_does_nothing(auth_app, client, flow, user, web_client):
    """RFC 7009 §2.2: a client cannot revoke someone else's token (200, token stays active)."""
    other = make_client(auth_app, "Other")
    tokens = flow.token(user, web_client)
    r = client.post("/oauth/revoke", data={"token": tokens["refresh_token"]}, headers=other.basic())
    assert r.status_code == 200
    assert introspect(client, tokens["refresh_token"], web_client).json["active"] is True


def test_revocation_without_client_auth_is_refused(client, flow, user, web_client):
    """Revocation needs client authentication; the token stays active."""
    tokens = flow.token(user, web_client)
    r = client.post("/oauth/revoke", data={"token": tokens["refresh_token"]})
    assert r.status_code == 401
    assert r.json["error"] == "invalid_client"
    assert introspect(client, tokens["refresh_token"], web_client).json["active"] is True
