"""State handling, refresh-token reuse, forbidden grants and the implicit token's delivery."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.conftest import ISSUER, TEST_REDIRECT, ClientInfo, make_client, make_user, pkce_pair

JSON = {"Accept": "application/json"}

UNUSUAL_STATES = {
    "reserved_chars": "a&b=c?d#e/f+g%20h;i",
    "spaces": "  leading and trailing  ",
    "quotes_and_markup": "\"'<script>alert(1)</script>",
    "backslash_and_braces": "\\{}[]|^`~",
    "unicode": "état-☎-日本-🙂",
    "percent_literal": "%25%00%zz",
    "long": "s" * 2000,
    "jwt_like": "eyJhbGciOiJIUzI1NiJ9.eyJub25jZSI6IngifQ.sig-_",
}


def raw_params(location: str, part: str = "query") -> list[tuple[str, str]]:
    """All (name, value) pairs of the redirect, duplicates kept, strictly parsed."""
    parts = urlsplit(location)
    return parse_qsl(getattr(parts, part), keep_blank_values=True, strict_parsing=False)


def introspect(client, as_client: ClientInfo, token: str) -> dict:
    r = client.post("/oauth/introspect", data={"token": token}, headers=as_client.basic())
    assert r.status_code == 200, r.get_data(as_text=True)
    return dict(r.json)


def assert_token_error(r, error: str, status: int = 400) -> None:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    assert r.json["error"] == error, r.json
    assert "access_token" not in r.json


def refresh(client, c: ClientInfo, token: str):
    return client.post(
        "/oauth/token",
        headers=c.basic(),
        data={"grant_type": "refresh_token", "refresh_token": token},
    )


# --- state --------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(UNUSUAL_STATES.values()), ids=list(UNUSUAL_STATES))
def test_state_tampering_state_returned_byte_for_byte_on_success(
    client, flow, user, web_client, state
):
    flow.authorize(user, web_client)  # signed in and consented
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    pairs = raw_params(r.headers["Location"])
    assert [v for k, v in pairs if k == "state"] == [state]
    assert [k for k, _ in pairs] == ["code", "state", "iss"]


@pytest.mark.parametrize("state", list(UNUSUAL_STATES.values()), ids=list(UNUSUAL_STATES))
def test_state_tampering_state_returned_byte_for_byte_through_login_and_consent(
    client, flow, user, web_client, state
):
    result = flow.authorize(user, web_client, state=state)
    assert result["state"] == state
    assert "code" in result


@pytest.mark.parametrize("state", list(UNUSUAL_STATES.values()), ids=list(UNUSUAL_STATES))
def test_state_tampering_state_returned_byte_for_byte_on_error(
    client, flow, user, web_client, state
):
    # access_denied after the consent page
    result = flow.authorize(user, web_client, state=state, consent=False)
    result.pop("error_description", None)
    assert result == {"error": "access_denied", "state": state, "iss": ISSUER}
    # invalid_scope straight from the authorization endpoint
    params = {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "admin",
        "state": state,
    }
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    pairs = raw_params(r.headers["Location"])
    assert dict(pairs)["error"] == "invalid_scope"
    assert [v for k, v in pairs if k == "state"] == [state]


@pytest.mark.parametrize(
    "state", ["st4te", UNUSUAL_STATES["reserved_chars"], UNUSUAL_STATES["unicode"]]
)
def test_state_tampering_state_returned_byte_for_byte_in_implicit_fragment(
    client, flow, user, web_client, state
):
    result = flow.authorize(user, web_client, response_type="token", state=state)
    assert result["state"] == state
    result = flow.authorize(user, web_client, response_type="token", state=state, scope="admin")
    result.pop("error_description", None)
    assert result == {"error": "invalid_scope", "state": state, "iss": ISSUER}


def test_state_tampering_server_never_invents_state(client, flow, user, web_client):
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    # success through login and consent, then straight on, then an error
    r = client.get("/oauth/auth?" + urlencode(params))
    r = flow.login(user, **params)
    r = client.post("/auth/grant", data={**params, "grant": "true", "csrf_token": flow.csrf()})
    assert r.status_code == 302
    assert [k for k, _ in raw_params(r.headers["Location"])] == ["code", "iss"]
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    assert [k for k, _ in raw_params(r.headers["Location"])] == ["code", "iss"]
    r = client.get("/oauth/auth?" + urlencode({**params, "scope": "admin"}))
    assert r.status_code == 302
    assert "state" not in dict(raw_params(r.headers["Location"]))
    r = client.post("/auth/grant", data={**params, "grant": "false", "csrf_token": flow.csrf()})
    assert [k for k, _ in raw_params(r.headers["Location"])] == [
        "error",
        "error_description",
        "iss",
    ]


def test_state_tampering_repeated_state_is_refused_not_merged(client, flow, user, web_client):
    """Two state parameters (parameter pollution, RFC 6749 §3.1): refused on the error page;
    neither value is picked silently and no code is issued."""
    flow.authorize(user, web_client)
    _, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": web_client.client_id,
            "redirect_uri": TEST_REDIRECT,
            "scope": "call",
            "state": "one",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    r = client.get("/oauth/auth?" + query + "&state=two", headers=JSON)
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert r.json["error"] == "invalid_request"


def test_state_tampering_repeated_redirect_uri_is_refused_without_redirect(
    client, flow, user, web_client
):
    flow.authorize(user, web_client)
    _, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": web_client.client_id,
            "redirect_uri": TEST_REDIRECT,
            "scope": "call",
            "state": "one",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    r = client.get(
        "/oauth/auth?" + query + "&" + urlencode({"redirect_uri": "https://evil.com"}), headers=JSON
    )
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert r.json["error"] == "invalid_request"


# --- refresh-token reuse --------------------------------------------------------------------


def test_refresh_token_reuse_revokes_the_whole_family(client, flow, user, web_client):
    first = flow.token(user, web_client)
    rotated = refresh(client, web_client, first["refresh_token"])
    assert rotated.status_code == 200, rotated.json
    second = rotated.json
    assert second["refresh_token"] != first["refresh_token"]
    assert introspect(client, web_client, second["access_token"])["active"] is True
    # rotation: the old refresh token is no longer active even before any reuse
    assert introspect(client, web_client, first["refresh_token"]) == {"active": False}

    reuse = refresh(client, web_client, first["refresh_token"])
    assert_token_error(reuse, "invalid_grant")

    for token in (first["access_token"], second["access_token"], second["refresh_token"]):
        assert introspect(client, web_client, token) == {"active": False}
    assert_token_error(refresh(client, web_client, second["refresh_token"]), "invalid_grant")


def test_refresh_token_reuse_after_several_rotations_revokes_every_descendant(
    client, flow, user, web_client
):
    tokens = [flow.token(user, web_client)]
    for _ in range(3):
        r = refresh(client, web_client, tokens[-1]["refresh_token"])
        assert r.status_code == 200, r.json
        tokens.append(r.json)
    assert_token_error(refresh(client, web_client, tokens[1]["refresh_token"]), "invalid_grant")
    for t in tokens:
        assert introspect(client, web_client, t["access_token"]) == {"active": False}
        assert introspect(client, web_client, t["refresh_token"]) == {"active": False}


def test_refresh_token_reuse_does_not_touch_other_families(client, flow, user, web_client):
    a = flow.token(user, web_client)
    b = flow.token(user, web_client)
    assert refresh(client, web_client, a["refresh_token"]).status_code == 200
    assert_token_error(refresh(client, web_client, a["refresh_token"]), "invalid_grant")
    assert introspect(client, web_client, b["access_token"])["active"] is True
    assert refresh(client, web_client, b["refresh_token"]).status_code == 200


def test_refresh_token_after_revocation_is_refused(client, flow, user, web_client):
    tokens = flow.token(user, web_client)
    r = client.post(
        "/oauth/revoke",
        headers=web_client.basic(),
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
    )
    assert r.status_code == 200
    assert_token_error(refresh(client, web_client, tokens["refresh_token"]), "invalid_grant")
    assert introspect(client, web_client, tokens["access_token"]) == {"active": False}


def test_refresh_token_cannot_widen_scope(client, flow, auth_app):
    # An admin-role user, so only the refresh rule (not the role) stands in the way.
    root = make_user(auth_app, "root", "root-password", role="admin")
    c = make_client(auth_app, "Two scopes", scope="call admin", allow_admin_for_users=True)
    tokens = flow.token(root, c, scope="call")
    r = client.post(
        "/oauth/token",
        headers=c.basic(),
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "call admin",
        },
    )
    assert_token_error(r, "invalid_scope")


# --- forbidden grants ---------------------------------------------------------------------


def test_resource_owner_password_grant_is_unsupported(client, user, web_client):
    data = {
        "grant_type": "password",
        "username": user.username,
        "password": user.password,
        "scope": "call",
    }
    r = client.post("/oauth/token", data=data, headers=web_client.basic())
    assert_token_error(r, "unsupported_grant_type")
    r = client.post(
        "/oauth/token",
        data={**data, "client_id": web_client.client_id, "client_secret": web_client.client_secret},
    )
    assert_token_error(r, "unsupported_grant_type")
    meta = client.get("/.well-known/oauth-authorization-server").json
    assert "password" not in meta["grant_types_supported"]


def test_client_credentials_grant_refused_for_client_not_registered_for_it(client, web_client):
    r = client.post(
        "/oauth/token",
        headers=web_client.basic(),
        data={"grant_type": "client_credentials", "scope": "call"},
    )
    assert_token_error(r, "unauthorized_client")


def test_client_credentials_refused_to_public_client(client, auth_app):
    pub = make_client(auth_app, "Public", public=True)
    r = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": pub.client_id}
    )
    assert_token_error(r, "invalid_client", status=401)


# --- implicit -----------------------------------------------------------------------------


def test_implicit_token_only_in_the_fragment(client, flow, user, web_client):
    flow.authorize(user, web_client, response_type="token")  # consent
    params = {
        "response_type": "token",
        "client_id": web_client.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "state": "st4te",
        "response_mode": "query",
    }
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    loc = r.headers["Location"]
    parts = urlsplit(loc)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == TEST_REDIRECT
    assert parts.query == ""
    frag = dict(parse_qsl(parts.fragment))
    assert set(frag) == {"access_token", "token_type", "expires_in", "scope", "state", "iss"}
    assert "refresh_token" not in frag
    assert frag["token_type"] == "Bearer"
    assert r.headers["Cache-Control"] == "no-store"


def test_implicit_token_refused_for_client_not_registered_for_response_type_token(
    client, flow, user, auth_app
):
    code_only = make_client(auth_app, "Code only")
    flow.authorize(user, code_only)  # signed in and consented for code
    params = {
        "response_type": "token",
        "client_id": code_only.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "state": "st4te",
    }
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    loc = r.headers["Location"]
    assert loc.startswith(TEST_REDIRECT)
    assert "access_token" not in loc
    parts = urlsplit(loc)
    error = dict(parse_qsl(parts.fragment)) or dict(parse_qsl(parts.query))
    assert error == {
        "error": "unauthorized_client",
        "error_description": error.get("error_description"),
        "state": "st4te",
        "iss": ISSUER,
    }
    # The consent form cannot be used to force it either.
    r = client.post("/auth/grant", data={**params, "grant": "true", "csrf_token": flow.csrf()})
    assert "access_token" not in r.headers.get("Location", "")


def test_implicit_token_refused_at_token_endpoint(client, web_client):
    r = client.post(
        "/oauth/token", headers=web_client.basic(), data={"grant_type": "implicit", "scope": "call"}
    )
    assert_token_error(r, "unsupported_grant_type")
