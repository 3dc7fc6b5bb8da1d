"""The authorization code flow on the original's URLs: authorize → login → consent → token."""

from __future__ import annotations

from urllib.parse import urlencode

from tests.auth_server.helpers import (
    HTML,
    JSON,
    auth_params,
    ensure_csrf,
    exchange,
    get_code,
    pkce_params,
    session_csrf,
    sign_in,
    verify_access_token,
)
from tests.conftest import ISSUER, TEST_REDIRECT, make_client, make_user, query_of


def _query(location: str) -> tuple[str, dict[str, str]]:
    """The path and query of a redirect; a redirect to the client must name this server in
    ``iss`` (RFC 9207), checked here and left out of the query returned."""
    base = location.split("?", 1)[0]
    query = query_of(location)
    if base.startswith("http"):
        assert query.pop("iss") == ISSUER, location
    return base, query


def test_authorize_without_session_redirects_to_login_with_same_query(client, web_client):
    """Not signed in: 302 to /auth/login carrying exactly the authorization request's query."""
    _, params = pkce_params(web_client)
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    assert _query(r.headers["Location"]) == ("/auth/login", params)
    assert r.headers["Cache-Control"] == "no-store"


def test_login_page_json_lists_oauth_parameters(client, web_client):
    """GET /auth/login as JSON echoes the OAuth parameters plus csrf_token and client_name."""
    _, params = pkce_params(web_client)
    r = client.get("/auth/login?" + urlencode(params), headers=JSON)
    assert r.status_code == 200
    assert r.json == {**params, "csrf_token": session_csrf(client), "client_name": "Web app"}
    assert r.json["csrf_token"]


def test_full_code_flow_step_by_step(client, user, web_client):
    """Login 303 → /auth/grant (JSON) → grant=true 302 with code+state → token (basic auth)."""
    verifier, params = pkce_params(web_client)
    r = client.get("/auth/login?" + urlencode(params), headers=JSON)
    anon_csrf = r.json["csrf_token"]

    r = client.post(
        "/auth/login",
        data={**params, "username": "alice", "password": "alice-password", "csrf_token": anon_csrf},
    )
    assert r.status_code == 303
    assert _query(r.headers["Location"]) == ("/auth/grant", params)

    r = client.get("/auth/grant?" + urlencode(params), headers=JSON)
    assert r.status_code == 200
    new_csrf = session_csrf(client)
    assert new_csrf and new_csrf != anon_csrf  # a fresh session after login
    assert r.json == {
        **params,
        "client_name": "Web app",
        "scope": "call",
        "username": "alice",
        "csrf_token": new_csrf,
    }

    r = client.post("/auth/grant", data={**params, "grant": "true", "csrf_token": new_csrf})
    assert r.status_code == 302
    assert r.headers["Cache-Control"] == "no-store"
    base, query = _query(r.headers["Location"])
    assert base == TEST_REDIRECT
    assert set(query) == {"code", "state"}
    assert query["state"] == "st4te"

    r = exchange(client, web_client, query["code"], verifier, auth="basic")
    assert r.status_code == 200, r.json
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Pragma"] == "no-cache"
    body = r.json
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 3600, "call")
    assert isinstance(body["refresh_token"], str) and len(body["refresh_token"]) >= 32
    claims = verify_access_token(client, body["access_token"])
    assert (claims["sub"], claims["username"], claims["client_id"], claims["scope"]) == (
        user.id,
        "alice",
        web_client.client_id,
        "call",
    )


def test_grant_post_with_stale_csrf_is_refused(client, user, web_client):
    """The consent form needs the session's CSRF token: a wrong one is 400, no redirect."""
    _, params = pkce_params(web_client)
    assert sign_in(client, user, **params).status_code == 303
    r = client.post(
        "/auth/grant", data={**params, "grant": "true", "csrf_token": "forged"}, headers=JSON
    )
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert r.json["error"] == "invalid_request"


def test_login_with_wrong_password_is_401_and_stays_signed_out(client, user, web_client):
    """A wrong password re-shows the login (401 JSON) and the authorization still needs login."""
    _, params = pkce_params(web_client)
    r = client.post(
        "/auth/login",
        headers=JSON,
        data={
            **params,
            "username": "alice",
            "password": "wrong",
            "csrf_token": ensure_csrf(client),
        },
    )
    assert r.status_code == 401
    assert r.json == {
        **params,
        "csrf_token": session_csrf(client),
        "client_name": "Web app",
        "error": "invalid_credentials",
        "error_description": "Invalid username or password.",
    }
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/auth/login?")


def test_signed_in_without_consent_goes_to_grant_page(client, user, web_client):
    """Signed in but not yet granted: /oauth/auth answers 303 to /auth/grant, same query."""
    r = sign_in(client, user)
    assert (r.status_code, r.json) == (200, {"status": "signed_in", "username": "alice"})
    _, params = pkce_params(web_client)
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 303
    assert _query(r.headers["Location"]) == ("/auth/grant", params)


def test_login_with_existing_consent_goes_straight_to_the_client(client, user, web_client, flow):
    """POST /auth/login when consent exists already: 303 straight to redirect_uri with a code."""
    flow.authorize(user, web_client)
    assert (
        client.post(
            "/auth/logout", data={"csrf_token": session_csrf(client)}, headers=JSON
        ).status_code
        == 200
    )
    _, params = pkce_params(web_client, state="relogin")
    r = sign_in(client, user, **params)
    assert r.status_code == 303
    base, query = _query(r.headers["Location"])
    assert base == TEST_REDIRECT
    assert set(query) == {"code", "state"}
    assert query["state"] == "relogin"


def test_token_exchange_with_client_secret_post(client, user, web_client):
    """client_secret_post (id and secret in the form) works like client_secret_basic."""
    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    r = exchange(client, web_client, code, verifier, auth="post")
    assert r.status_code == 200, r.json
    assert (r.json["token_type"], r.json["expires_in"], r.json["scope"]) == ("Bearer", 3600, "call")
    assert "refresh_token" in r.json
    assert r.headers["Cache-Control"] == "no-store"


def test_confidential_client_without_pkce(client, user, web_client):
    """A confidential client may skip PKCE (RFC 6749); its secret authenticates the exchange."""
    params = auth_params(web_client)
    code = get_code(client, user, params)
    r = exchange(client, web_client, code, auth="basic")
    assert r.status_code == 200, r.json
    assert r.json["token_type"] == "Bearer"


def test_public_client_with_pkce_s256(auth_app, client, user):
    """A public client (auth method none) gets tokens with its PKCE verifier and no secret."""
    spa = make_client(auth_app, "SPA", public=True)
    assert spa.client_secret is None
    verifier, params = pkce_params(spa)
    code = get_code(client, user, params)
    r = exchange(client, spa, code, verifier, auth="none")
    assert r.status_code == 200, r.json
    body = r.json
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 3600, "call")
    assert r.headers["Cache-Control"] == "no-store"
    claims = verify_access_token(client, body["access_token"])
    assert (claims["sub"], claims["client_id"]) == (user.id, spa.client_id)


def test_public_client_cannot_authenticate_with_a_secret_method(auth_app, client, user):
    """A public client has no secret: client_secret_basic with an empty secret is invalid_client."""
    spa = make_client(auth_app, "SPA", public=True)
    verifier, params = pkce_params(spa)
    code = get_code(client, user, params)
    r = exchange(client, spa, code, verifier, auth="basic")
    assert r.status_code == 401
    assert r.json["error"] == "invalid_client"


def test_no_refresh_token_without_refresh_grant(auth_app, client, user):
    """A client not registered for refresh_token gets no refresh token."""
    app_client = make_client(auth_app, "No refresh", grant_types=("authorization_code",))
    verifier, params = pkce_params(app_client)
    r = exchange(client, app_client, get_code(client, user, params), verifier)
    assert r.status_code == 200, r.json
    assert set(r.json) == {"access_token", "token_type", "expires_in", "scope"}


def test_consent_is_remembered(client, user, web_client, flow):
    """After one grant, /oauth/auth for the same user, client and scope redirects with a code."""
    flow.authorize(user, web_client)
    _, params = pkce_params(web_client, state="second")
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    base, query = _query(r.headers["Location"])
    assert base == TEST_REDIRECT
    assert set(query) == {"code", "state"}
    assert query["state"] == "second"


def test_consent_for_a_wider_scope_is_asked_again(auth_app, client):
    """Consent covers the scopes granted: asking for more goes to the consent page again."""
    user = make_user(auth_app, "root", "root-password", role="admin")
    app_client = make_client(auth_app, "Two scopes", scope="call admin", allow_admin_for_users=True)
    get_code(client, user, pkce_params(app_client)[1])
    _, params = pkce_params(app_client, scope="call admin")
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 303
    assert _query(r.headers["Location"]) == ("/auth/grant", params)


def test_refusing_consent_redirects_with_access_denied(client, user, web_client):
    """grant=false → 302 to the client with error=access_denied and the state, no code."""
    _, params = pkce_params(web_client)
    assert sign_in(client, user, **params).status_code == 303
    r = client.post(
        "/auth/grant", data={**params, "grant": "false", "csrf_token": ensure_csrf(client)}
    )
    assert r.status_code == 302
    base, query = _query(r.headers["Location"])
    assert base == TEST_REDIRECT
    assert query == {
        "error": "access_denied",
        "error_description": "The user declined to authorize the application.",
        "state": "st4te",
    }
    # A refusal is not remembered as consent.
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 303


def test_logout_ends_the_session(client, user, web_client, flow):
    """After POST /auth/logout (with CSRF) /oauth/auth sends the user to login again."""
    flow.authorize(user, web_client)
    _, params = pkce_params(web_client)
    assert (
        client.get("/oauth/auth?" + urlencode(params)).headers["Location"].startswith(TEST_REDIRECT)
    )
    r = client.post("/auth/logout", data={"csrf_token": session_csrf(client)}, headers=JSON)
    assert r.status_code == 200
    assert r.json == {"status": "signed_out"}
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    assert _query(r.headers["Location"]) == ("/auth/login", params)


def test_logout_without_csrf_is_refused(client, user, web_client, flow):
    """A cross-site POST /auth/logout (no CSRF token) is 400 and the session survives."""
    flow.authorize(user, web_client)
    r = client.post("/auth/logout", headers=JSON)
    assert r.status_code == 400
    assert r.json["error"] == "invalid_request"
    _, params = pkce_params(web_client)
    assert (
        client.get("/oauth/auth?" + urlencode(params))
        .headers["Location"]
        .startswith(TEST_REDIRECT + "?")
    )


def test_html_login_page(client, web_client):
    """A browser gets the HTML login form: labelled inputs, the client's name, hidden params."""
    _, params = pkce_params(web_client)
    r = client.get("/auth/login?" + urlencode(params), headers=HTML)
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert '<label for="username">' in html
    assert '<input id="username" name="username"' in html
    assert '<label for="password">' in html
    assert '<input id="password" name="password" type="password"' in html
    assert "<strong>Web app</strong>" in html
    assert f'<input type="hidden" name="csrf_token" value="{session_csrf(client)}">' in html
    for name, value in params.items():
        assert f'<input type="hidden" name="{name}" value="{value}">' in html


def test_html_consent_page(client, user, web_client):
    """A browser gets the HTML consent page naming the client, the user and the scope."""
    _, params = pkce_params(web_client)
    assert sign_in(client, user, **params).status_code == 303
    r = client.get("/auth/grant?" + urlencode(params), headers=HTML)
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "Allow Web app to use your account?" in html
    assert "<strong>alice</strong>" in html
    assert "<code>call</code> — place, end and read phone calls on your behalf" in html
    assert "<code>http://127.0.0.1:8888</code>" in html
    assert '<button type="submit" name="grant" value="true"' in html
    assert '<button type="submit" name="grant" value="false"' in html
    assert f'<input type="hidden" name="csrf_token" value="{session_csrf(client)}">' in html


def test_not_you_sign_out_returns_to_the_login_of_the_same_request(client, user, web_client):
    """ "Not you? Sign out" on the consent page ends the session and restarts the same flow."""
    from tests.conftest import Flow

    flow = Flow(client)
    params = {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": web_client.redirect_uris[0],
        "scope": "call",
        "state": "keep-me",
    }
    r = flow.login(user, **params)
    assert r.status_code == 303 and r.headers["Location"].startswith("/auth/grant?")
    r = client.post("/auth/logout", data={**params, "csrf_token": flow.csrf()})
    assert r.status_code == 303
    assert r.headers["Location"] == "/auth/login?" + urlencode(params)
    with client.session_transaction() as sess:
        assert "uid" not in sess
