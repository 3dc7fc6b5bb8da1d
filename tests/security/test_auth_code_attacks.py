"""Attacks on the authorization code: replay, injection/theft, redirect-URI swap at the token
endpoint, PKCE downgrade, and client-id mix-up between the authorization and token requests.

Token endpoint refusals are RFC 6749 §5.2 JSON: 400 and the exact ``error`` code.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode, urlsplit

import jwt
import pytest
from sqlalchemy import update

from tests.conftest import TEST_REDIRECT, ClientInfo, make_client, pkce_pair, query_of

JSON = {"Accept": "application/json"}


@pytest.fixture
def other_client(auth_app) -> ClientInfo:
    """A second confidential client on the same redirect URI: the attacker's app."""
    return make_client(auth_app, "Attacker app")


@pytest.fixture
def native_client(auth_app) -> ClientInfo:
    return make_client(auth_app, "Native app", public=True)


def code_for(flow, user, c, **kw):
    """(code, verifier) issued to ``c`` through the real browser flow."""
    result = flow.authorize(user, c, **kw)
    assert "code" in result, result
    return result["code"], flow.verifier


def exchange(
    client,
    c: ClientInfo,
    code: str,
    verifier: str | None,
    redirect_uri: str | None = TEST_REDIRECT,
    **extra: str,
):
    data = {"grant_type": "authorization_code", "code": code, **extra}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    if verifier is not None:
        data["code_verifier"] = verifier
    headers = {}
    if c.client_secret:
        headers = c.basic()
    else:
        data.setdefault("client_id", c.client_id)
    return client.post("/oauth/token", data=data, headers=headers)


def introspect(client, as_client: ClientInfo, token: str) -> dict:
    r = client.post("/oauth/introspect", data={"token": token}, headers=as_client.basic())
    assert r.status_code == 200, r.get_data(as_text=True)
    return dict(r.json)


def assert_token_error(r, error: str) -> None:
    assert r.status_code == 400, (r.status_code, r.get_data(as_text=True))
    assert r.json["error"] == error, r.json
    assert "access_token" not in r.json
    assert r.headers["Cache-Control"] == "no-store"


def assert_redirect_error(r, registered: str, error: str, state: str | None = "st4te") -> dict:
    """An error sent back to the *registered* redirect URI (and nowhere else), no code."""
    assert r.status_code in (302, 303), (r.status_code, r.get_data(as_text=True))
    loc = r.headers["Location"]
    parts = urlsplit(loc)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == registered
    params = query_of(loc)
    assert params["error"] == error, params
    assert "code" not in params and "access_token" not in params
    if state is not None:
        assert params["state"] == state
    return params


# --- code replay --------------------------------------------------------------------------


def test_authorization_code_replay_is_refused_and_revokes_first_tokens(
    client, flow, user, web_client
):
    code, verifier = code_for(flow, user, web_client)
    first = exchange(client, web_client, code, verifier)
    assert first.status_code == 200, first.json
    assert introspect(client, web_client, first.json["access_token"])["active"] is True

    replay = exchange(client, web_client, code, verifier)
    assert_token_error(replay, "invalid_grant")

    # RFC 6749 §4.1.2 / RFC 9700 §4.2.4: what the first use got is revoked.
    assert introspect(client, web_client, first.json["access_token"]) == {"active": False}
    assert introspect(client, web_client, first.json["refresh_token"]) == {"active": False}
    r = client.post(
        "/oauth/token",
        headers=web_client.basic(),
        data={"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"]},
    )
    assert_token_error(r, "invalid_grant")


def test_authorization_code_replay_by_public_client_is_refused(
    client, flow, user, native_client, admin_client
):
    code, verifier = code_for(flow, user, native_client)
    first = exchange(client, native_client, code, verifier)
    assert first.status_code == 200, first.json
    assert_token_error(exchange(client, native_client, code, verifier), "invalid_grant")
    assert introspect(client, admin_client, first.json["access_token"]) == {"active": False}


def test_forged_authorization_code_is_refused(client, web_client):
    assert_token_error(exchange(client, web_client, "A" * 48, None), "invalid_grant")


def test_expired_authorization_code_is_refused(auth_app, client, flow, user, web_client):
    from auth_server.extensions import db
    from auth_server.models import AuthorizationCode

    code, verifier = code_for(flow, user, web_client)
    with auth_app.app_context():
        db.session.execute(update(AuthorizationCode).values(expires_at=int(time.time()) - 1))
        db.session.commit()
    assert_token_error(exchange(client, web_client, code, verifier), "invalid_grant")


# --- code injection / theft ----------------------------------------------------------------


def test_authorization_code_stolen_by_another_client_is_refused(
    client, flow, user, web_client, other_client
):
    code, verifier = code_for(flow, user, web_client)
    r = exchange(client, other_client, code, verifier)
    assert_token_error(r, "invalid_grant")


def test_authorization_code_stolen_by_public_client_is_refused(
    client, flow, user, web_client, native_client
):
    code, verifier = code_for(flow, user, web_client)
    r = exchange(client, native_client, code, verifier)
    assert_token_error(r, "invalid_grant")


def test_authorization_code_of_public_client_injected_by_confidential_client_is_refused(
    client, flow, user, native_client, other_client
):
    code, verifier = code_for(flow, user, native_client)
    r = exchange(client, other_client, code, verifier)
    assert_token_error(r, "invalid_grant")


def test_authorization_code_with_different_redirect_uri_is_refused(client, flow, user, web_client):
    code, verifier = code_for(flow, user, web_client)
    r = exchange(client, web_client, code, verifier, redirect_uri="https://evil.com/cb")
    assert_token_error(r, "invalid_grant")


def test_authorization_code_without_the_redirect_uri_it_was_issued_for_is_refused(
    client, flow, user, web_client
):
    """RFC 6749 §4.1.3: redirect_uri was in the authorization request, so it is REQUIRED."""
    code, verifier = code_for(flow, user, web_client)
    r = exchange(client, web_client, code, verifier, redirect_uri=None)
    assert_token_error(r, "invalid_grant")


def test_authorization_code_with_other_loopback_port_is_refused_at_token_endpoint(
    client, flow, user, native_client
):
    """The native client may pick its loopback port, but the token request must repeat the
    exact URI the code was sent to."""
    code, verifier = code_for(flow, user, native_client)
    r = exchange(client, native_client, code, verifier, redirect_uri="http://127.0.0.1:40000/test")
    assert_token_error(r, "invalid_grant")


# --- PKCE downgrade -----------------------------------------------------------------------


def test_pkce_downgrade_verifier_omitted_is_refused(client, flow, user, web_client):
    code, _ = code_for(flow, user, web_client)
    assert_token_error(exchange(client, web_client, code, None), "invalid_request")


def test_pkce_downgrade_verifier_omitted_by_public_client_is_refused(
    client, flow, user, native_client
):
    code, _ = code_for(flow, user, native_client)
    assert_token_error(exchange(client, native_client, code, None), "invalid_request")


def test_pkce_wrong_verifier_is_refused(client, flow, user, native_client):
    code, _ = code_for(flow, user, native_client)
    other_verifier, _ = pkce_pair()
    assert_token_error(exchange(client, native_client, code, other_verifier), "invalid_grant")


def test_pkce_verifier_equal_to_challenge_is_refused(client, flow, user, native_client):
    """A 'plain' comparison would accept the challenge itself as verifier."""
    verifier, challenge = pkce_pair()
    result = flow.authorize(
        user, native_client, pkce=False, code_challenge=challenge, code_challenge_method="S256"
    )
    assert_token_error(exchange(client, native_client, result["code"], challenge), "invalid_grant")


def test_pkce_downgrade_to_plain_method_is_refused(client, flow, user, web_client):
    flow.authorize(user, web_client)  # signed in and consented: a valid request goes through
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "plain",
    }
    r = client.get("/oauth/auth?" + urlencode(params))
    assert_redirect_error(r, TEST_REDIRECT, "invalid_request")


def test_pkce_downgrade_to_implicit_default_plain_method_is_refused(client, flow, user, web_client):
    """No code_challenge_method means 'plain' (RFC 7636 §4.3): refused like plain."""
    flow.authorize(user, web_client)
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "state": "st4te",
        "code_challenge": challenge,
    }
    r = client.get("/oauth/auth?" + urlencode(params))
    assert_redirect_error(r, TEST_REDIRECT, "invalid_request")


def test_pkce_downgrade_public_client_without_challenge_is_refused(
    client, flow, user, native_client
):
    flow.authorize(user, native_client)
    params = {
        "response_type": "code",
        "client_id": native_client.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "state": "st4te",
    }
    r = client.get("/oauth/auth?" + urlencode(params))
    assert_redirect_error(r, TEST_REDIRECT, "invalid_request")


def test_pkce_downgrade_public_client_without_challenge_on_first_visit_gets_no_code(
    client, flow, user, native_client
):
    """Also through login and consent: the request is refused before any code exists."""
    params = {
        "response_type": "code",
        "client_id": native_client.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "state": "st4te",
    }
    r = client.get("/oauth/auth?" + urlencode(params))
    assert_redirect_error(r, TEST_REDIRECT, "invalid_request")
    r = flow.login(user, **params)
    assert_redirect_error(r, TEST_REDIRECT, "invalid_request")
    r = client.post("/auth/grant", data={**params, "grant": "true", "csrf_token": flow.csrf()})
    assert_redirect_error(r, TEST_REDIRECT, "invalid_request")


def test_pkce_verifier_sent_without_challenge_is_refused(client, flow, user, web_client):
    """RFC 9700 §4.8.2: a code_verifier for a code issued without challenge is an error."""
    result = flow.authorize(user, web_client, pkce=False)
    verifier, _ = pkce_pair()
    assert_token_error(exchange(client, web_client, result["code"], verifier), "invalid_request")


# --- client-id mix-up ---------------------------------------------------------------------


def test_client_id_mixup_code_for_a_token_request_as_b_is_refused(
    client, flow, user, web_client, other_client
):
    code, verifier = code_for(flow, user, web_client)
    r = client.post(
        "/oauth/token",
        headers=other_client.basic(),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": TEST_REDIRECT,
            "code_verifier": verifier,
        },
    )
    assert_token_error(r, "invalid_grant")


def test_client_id_mixup_client_id_a_in_body_with_b_basic_auth_is_refused(
    client, flow, user, web_client, other_client
):
    code, verifier = code_for(flow, user, web_client)
    r = client.post(
        "/oauth/token",
        headers=other_client.basic(),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": TEST_REDIRECT,
            "code_verifier": verifier,
            "client_id": web_client.client_id,
        },
    )
    # Two client identities in one request: refused before the code is even looked at.
    assert_token_error(r, "invalid_request")


def test_client_id_mixup_client_secret_post_as_b_is_refused(
    client, flow, user, web_client, other_client
):
    code, verifier = code_for(flow, user, web_client)
    r = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": TEST_REDIRECT,
            "code_verifier": verifier,
            "client_id": other_client.client_id,
            "client_secret": other_client.client_secret,
        },
    )
    assert_token_error(r, "invalid_grant")


def test_client_id_mixup_a_secret_with_b_id_is_refused(
    client, flow, user, web_client, other_client
):
    code, verifier = code_for(flow, user, web_client)
    r = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": TEST_REDIRECT,
            "code_verifier": verifier,
            "client_id": other_client.client_id,
            "client_secret": web_client.client_secret,
        },
    )
    assert r.status_code == 401, r.json
    assert r.json["error"] == "invalid_client"


def test_client_id_mixup_body_client_id_cannot_relabel_the_token(
    client, flow, user, web_client, other_client
):
    """Basic auth as A with client_id=B in the body: two identities in one request (RFC 6749
    §2.3), refused before the code is looked at. The code stays A's, and the token A then
    gets cannot be attributed to B."""
    code, verifier = code_for(flow, user, web_client)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": TEST_REDIRECT,
        "code_verifier": verifier,
    }
    r = client.post(
        "/oauth/token",
        headers=web_client.basic(),
        data={**data, "client_id": other_client.client_id},
    )
    assert_token_error(r, "invalid_request")
    r = client.post("/oauth/token", headers=web_client.basic(), data=data)
    assert r.status_code == 200, r.json
    claims = jwt.decode(r.json["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == web_client.client_id
    assert introspect(client, web_client, r.json["access_token"])["client_id"] == (
        web_client.client_id
    )
    assert introspect(client, other_client, r.json["access_token"]) == {"active": False}


def test_client_id_mixup_redirect_uri_of_another_client_is_refused(
    client, flow, user, auth_app, web_client
):
    """Authorization request for A that names B's redirect URI."""
    b = make_client(auth_app, "B", redirect_uris=["https://b.example.com/cb"])
    flow.authorize(user, web_client)
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": b.redirect_uris[0],
        "scope": "call",
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    r = client.get("/oauth/auth?" + urlencode(params), headers=JSON)
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert r.json["error"] == "invalid_request"


def test_client_id_mixup_refresh_token_of_a_used_by_b_is_refused(
    client, flow, user, web_client, other_client
):
    tokens = flow.token(user, web_client)
    r = client.post(
        "/oauth/token",
        headers=other_client.basic(),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert_token_error(r, "invalid_grant")
    # ... and the attempt did not burn A's refresh token.
    r = client.post(
        "/oauth/token",
        headers=web_client.basic(),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert r.status_code == 200, r.json
