"""Attacks through the browser pages: password brute force, CSRF, session-cookie theft,
clickjacking, caching of secrets, and cross-origin reads (CORS)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import (
    TEST_REDIRECT,
    Flow,
    make_client,
    make_user,
    pkce_pair,
)

JSON = {"Accept": "application/json"}
SPA = "https://spa.example.com"


@pytest.fixture
def limited_app(app_with) -> Flask:
    return app_with(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://")


@pytest.fixture
def cors_app(app_with) -> Flask:
    return app_with(CORS_ORIGINS=[SPA])


def csrf_of(client: FlaskClient) -> str:
    with client.session_transaction() as sess:
        token = sess.get("csrf")
    if token is None:
        client.get("/auth/login", headers=JSON)
        with client.session_transaction() as sess:
            token = sess["csrf"]
    return str(token)


def post_login(client: FlaskClient, username: str, password: str, headers=None, **kw):
    return client.post(
        "/auth/login",
        headers={**JSON, **(headers or {})},
        data={"username": username, "password": password, "csrf_token": csrf_of(client)},
        **kw,
    )


def signed_in_uid(client: FlaskClient) -> str | None:
    with client.session_transaction() as sess:
        return sess.get("uid")


def assert_too_many(r) -> None:
    assert r.status_code == 429, (r.status_code, r.get_data(as_text=True))
    assert int(r.headers["Retry-After"]) > 0
    assert r.json["error"] == "too_many_requests"


# --- brute force --------------------------------------------------------------------------


def test_brute_force_login_sixth_failure_for_one_username_is_throttled(limited_app):
    victim = make_user(limited_app, "victim", "victim-password")
    client = limited_app.test_client()
    for _ in range(5):
        r = post_login(client, victim.username, "guess")
        assert r.status_code == 401, r.json
        assert r.json["error"] == "invalid_credentials"
    assert_too_many(post_login(client, victim.username, "guess"))
    # Even the right password is refused while the limit lasts, and nobody is signed in.
    assert_too_many(post_login(client, victim.username, victim.password))
    assert signed_in_uid(client) is None
    # The attacker gains nothing by switching browser (the limit is per username).
    fresh = limited_app.test_client()
    assert_too_many(
        post_login(
            fresh, victim.username, victim.password, environ_base={"REMOTE_ADDR": "10.9.9.9"}
        )
    )


def test_brute_force_login_username_variants_share_one_limit(limited_app):
    victim = make_user(limited_app, "victim2", "victim-password")
    client = limited_app.test_client()
    for name in ("victim2", "VICTIM2", " victim2", "Victim2 ", "vIcTiM2"):
        assert post_login(client, name, "guess").status_code == 401
    assert_too_many(post_login(client, victim.username, "guess"))


def test_brute_force_login_per_ip_limit_across_many_usernames(limited_app):
    make_user(limited_app, "sprayed", "sprayed-password")
    client = limited_app.test_client()
    for i in range(20):
        r = post_login(client, f"user{i}", "Winter2024!")
        assert r.status_code == 401, (i, r.json)
    assert_too_many(post_login(client, "user-21", "Winter2024!"))
    assert_too_many(post_login(client, "sprayed", "sprayed-password"))
    # A spoofed X-Forwarded-For does not give a fresh budget (no trusted proxy configured).
    assert_too_many(post_login(client, "user-22", "x", headers={"X-Forwarded-For": "1.2.3.4"}))
    # Another address is not affected.
    other = limited_app.test_client()
    r = post_login(other, "sprayed", "sprayed-password", environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert r.status_code == 200, r.json


def test_brute_force_login_success_does_not_count_as_failure(limited_app):
    owner = make_user(limited_app, "owner", "owner-password")
    client = limited_app.test_client()
    for _ in range(4):
        assert post_login(client, owner.username, "typo").status_code == 401
    for _ in range(6):
        r = post_login(client, owner.username, owner.password)
        assert r.status_code == 200, r.json
        assert r.json == {"status": "signed_in", "username": owner.username}
    # The owner's browser is now a known device with its own allowance (test_lockout.py):
    # the username's budget is what a browser that never signed in as the owner meets.
    unknown = limited_app.test_client()
    assert post_login(unknown, owner.username, "typo").status_code == 401  # 5th failure
    assert_too_many(post_login(unknown, owner.username, "typo"))


def test_brute_force_login_csrf_failures_do_not_lock_the_user_out(limited_app):
    """Forged cross-site posts (no CSRF token) must not let an attacker lock an account."""
    owner = make_user(limited_app, "lockme", "lockme-password")
    client = limited_app.test_client()
    csrf_of(client)
    for _ in range(10):
        r = client.post(
            "/auth/login", headers=JSON, data={"username": owner.username, "password": "x"}
        )
        assert r.status_code == 400
    assert post_login(client, owner.username, owner.password).status_code == 200


def test_user_enumeration_same_answer_for_unknown_user_and_wrong_password(client, user):
    csrf_of(client)
    unknown = post_login(client, "nobody-here", "alice-password")
    wrong = post_login(client, user.username, "wrong-password")
    assert unknown.status_code == wrong.status_code == 401
    body_unknown = unknown.get_data(as_text=True)
    body_wrong = wrong.get_data(as_text=True)
    assert body_unknown == body_wrong
    assert unknown.json == {
        "csrf_token": csrf_of(client),
        "error": "invalid_credentials",
        "error_description": "Invalid username or password.",
    }

    def same(r):  # every header but the per-request id
        return {k: v for k, v in r.headers.items() if k.lower() != "x-request-id"}

    assert same(unknown) == same(wrong)


def test_user_enumeration_same_html_for_unknown_user_and_wrong_password(client, user):
    token = csrf_of(client)
    unknown = client.post(
        "/auth/login", data={"username": "nobody-here", "password": "x", "csrf_token": token}
    )
    wrong = client.post(
        "/auth/login", data={"username": user.username, "password": "x", "csrf_token": token}
    )
    assert unknown.status_code == wrong.status_code == 401
    # The form echoes the typed username back; apart from that the pages are identical.
    a = unknown.get_data(as_text=True).replace("nobody-here", "USERNAME")
    b = wrong.get_data(as_text=True).replace(user.username, "USERNAME")
    assert a == b
    assert "Invalid username or password." in a


# --- CSRF ---------------------------------------------------------------------------------


def consent_params(c) -> dict[str, str]:
    _, challenge = pkce_pair()
    return {
        "response_type": "code",
        "client_id": c.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }


def codes_issued(app: Flask) -> int:
    from sqlalchemy import func, select

    from auth_server.extensions import db
    from auth_server.models import AuthorizationCode

    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(AuthorizationCode)))


@pytest.mark.parametrize("token", [None, "", "wrong-token"], ids=["missing", "empty", "wrong"])
def test_csrf_on_consent_is_refused_and_no_code_issued(
    auth_app, client, flow: Flow, user, web_client, token
):
    params = consent_params(web_client)
    r = client.get("/oauth/auth?" + urlencode(params))
    r = flow.login(user, **params)
    assert r.status_code == 303 and r.headers["Location"].startswith("/auth/grant")
    data = {**params, "grant": "true"}
    if token is not None:
        data["csrf_token"] = token
    r = client.post("/auth/grant", data=data, headers=JSON)
    assert r.status_code == 400
    assert r.json["error"] == "invalid_request"
    assert "Location" not in r.headers
    assert codes_issued(auth_app) == 0
    # HTML too
    r = client.post("/auth/grant", data=data)
    assert r.status_code == 400 and "Location" not in r.headers
    assert codes_issued(auth_app) == 0


def test_csrf_token_of_another_session_is_refused(auth_app, client, flow, user, web_client):
    attacker = auth_app.test_client()
    attacker_token = csrf_of(attacker)  # valid, but for the attacker's own session
    params = consent_params(web_client)
    flow.login(user, **params)
    r = client.post(
        "/auth/grant", data={**params, "grant": "true", "csrf_token": attacker_token}, headers=JSON
    )
    assert r.status_code == 400 and r.json["error"] == "invalid_request"
    assert codes_issued(auth_app) == 0


def test_csrf_token_from_before_login_is_not_valid_after_login(
    auth_app, client, flow, user, web_client
):
    """Login rotates the session and its CSRF token (no fixation of either)."""
    before = csrf_of(client)
    params = consent_params(web_client)
    flow.login(user, **params)
    assert csrf_of(client) != before
    r = client.post(
        "/auth/grant", data={**params, "grant": "true", "csrf_token": before}, headers=JSON
    )
    assert r.status_code == 400
    assert codes_issued(auth_app) == 0


def test_csrf_on_grant_refusal_is_checked_too(client, flow, user, web_client):
    params = consent_params(web_client)
    flow.login(user, **params)
    r = client.post("/auth/grant", data={**params, "grant": "false"}, headers=JSON)
    assert r.status_code == 400 and "Location" not in r.headers


@pytest.mark.parametrize("token", [None, "", "wrong-token"], ids=["missing", "empty", "wrong"])
def test_csrf_on_login_is_refused(client, user, web_client, token):
    """Login CSRF: an attacker cannot sign the victim's browser into the attacker's account."""
    csrf_of(client)
    data = {**consent_params(web_client), "username": user.username, "password": user.password}
    if token is not None:
        data["csrf_token"] = token
    r = client.post("/auth/login", data=data, headers=JSON)
    assert r.status_code == 400
    assert r.json["error"] == "invalid_request"
    assert "Location" not in r.headers
    assert signed_in_uid(client) is None
    r = client.post("/auth/login", data=data)
    assert r.status_code == 400 and "Location" not in r.headers
    assert signed_in_uid(client) is None


def test_csrf_on_login_without_any_session_is_refused(client, user):
    r = client.post(
        "/auth/login",
        data={"username": user.username, "password": user.password, "csrf_token": "anything"},
        headers=JSON,
    )
    assert r.status_code == 400
    assert signed_in_uid(client) is None


def test_csrf_on_logout_is_refused(client, flow, user):
    flow.login(user)
    uid = signed_in_uid(client)
    assert uid == user.id
    r = client.post("/auth/logout", headers=JSON)
    assert r.status_code == 400
    assert signed_in_uid(client) == uid


# --- session cookie -----------------------------------------------------------------------


def session_set_cookie(r) -> str:
    cookies = [v for v in r.headers.getlist("Set-Cookie") if v.startswith("clickcall_auth=")]
    assert len(cookies) == 1, r.headers.getlist("Set-Cookie")
    return cookies[0]


def cookie_attrs(header: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]} | {
        part.strip().lower() for part in header.split(";")[1:]
    }


def test_session_cookie_theft_cookie_is_httponly_and_samesite_lax(client, user):
    r = client.get("/auth/login", headers=JSON)
    attrs = cookie_attrs(session_set_cookie(r))
    assert "httponly" in attrs
    assert "samesite=lax" in attrs
    r = post_login(client, user.username, user.password)
    assert r.status_code == 200
    attrs = cookie_attrs(session_set_cookie(r))
    assert "httponly" in attrs and "samesite=lax" in attrs


def test_session_cookie_theft_cookie_is_secure_when_configured(app_with):
    app = app_with(SESSION_COOKIE_SECURE=True)
    r = app.test_client().get("/auth/login", headers=JSON)
    attrs = cookie_attrs(session_set_cookie(r))
    assert {"secure", "httponly", "samesite=lax"} <= attrs


def test_session_cookie_theft_cookie_is_secure_in_production(monkeypatch, keys_dir):
    from auth_server import create_app

    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("AUTH_SECRET_KEY", "x" * 48)
    monkeypatch.setenv("AUTH_DATABASE_URL", "postgresql://clickcall@127.0.0.1:1/unused")
    monkeypatch.setenv("AUTH_ISSUER", "https://auth.example.com")
    monkeypatch.setenv("AUTH_KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("AUTH_GENERATE_KEYS", "false")
    monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    r = app.test_client().get("/auth/login", headers=JSON, base_url="https://auth.example.com")
    assert r.status_code == 200
    attrs = cookie_attrs(session_set_cookie(r))
    assert {"secure", "httponly", "samesite=lax"} <= attrs


# --- clickjacking and caching ---------------------------------------------------------------


def assert_page_protected(r) -> None:
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_clickjacking_login_page_cannot_be_framed_or_cached(client, web_client):
    r = client.get("/auth/login?" + urlencode(consent_params(web_client)))
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert_page_protected(r)
    r = client.post(
        "/auth/login", data={"username": "x", "password": "y", "csrf_token": csrf_of(client)}
    )
    assert r.status_code == 401
    assert_page_protected(r)


def test_clickjacking_consent_page_cannot_be_framed_or_cached(client, flow, user, web_client):
    params = consent_params(web_client)
    flow.login(user, **params)
    r = client.get("/auth/grant?" + urlencode(params))
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert "Accept" in r.get_data(as_text=True)
    assert_page_protected(r)


def test_clickjacking_test_page_cannot_be_framed_or_cached(client):
    r = client.get("/test?code=abc&state=xyz")
    assert r.status_code == 200
    assert_page_protected(r)
    r = client.get("/test?code=abc", headers=JSON)
    assert_page_protected(r)


def test_clickjacking_error_page_and_redirects_are_not_cached(client, flow, user, web_client):
    r = client.get("/oauth/auth?client_id=nope&response_type=code")
    assert r.status_code == 400
    assert_page_protected(r)
    result = flow.authorize(user, web_client)
    assert "code" in result
    r = client.get("/oauth/auth?" + urlencode(consent_params(web_client)))
    assert r.status_code == 302 and "code=" in r.headers["Location"]
    assert r.headers["Cache-Control"] == "no-store"


def test_token_response_is_not_cached(client, flow, user, web_client, admin_client):
    tokens = flow.token(user, web_client)
    assert tokens["access_token"]
    r = client.post(
        "/oauth/token",
        headers=admin_client.basic(),
        data={"grant_type": "client_credentials", "scope": "admin"},
    )
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Pragma"] == "no-cache"
    r = client.post(
        "/oauth/token",
        headers=web_client.basic(),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    r = client.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 401
    assert r.headers["Cache-Control"] == "no-store"


# --- CORS ---------------------------------------------------------------------------------

CORS_ENDPOINTS = [
    ("POST", "/oauth/token"),
    ("POST", "/oauth/revoke"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/oauth-authorization-server"),
]
NO_CORS_ENDPOINTS = [
    ("GET", "/oauth/auth"),
    ("GET", "/auth/login"),
    ("POST", "/auth/login"),
    ("GET", "/auth/grant"),
    ("POST", "/auth/grant"),
    ("POST", "/auth/logout"),
    ("POST", "/oauth/introspect"),
    ("GET", "/test"),
]


def cors_headers(r) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


@pytest.mark.parametrize(("method", "path"), CORS_ENDPOINTS)
def test_cors_allowed_origin_only_on_api_endpoints(cors_app, method, path):
    client = cors_app.test_client()
    r = client.open(path, method=method, headers={"Origin": SPA})
    assert r.status_code != 500
    assert r.headers["Access-Control-Allow-Origin"] == SPA
    assert r.headers.get("Access-Control-Allow-Credentials") != "true"
    preflight = client.options(
        path,
        headers={
            "Origin": SPA,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == SPA
    assert preflight.headers.get("Access-Control-Allow-Credentials") != "true"


@pytest.mark.parametrize(("method", "path"), CORS_ENDPOINTS)
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.com",
        "https://spa.example.com.evil.com",
        "http://spa.example.com",
        "null",
    ],
)
def test_cors_other_origin_gets_no_cors_headers(cors_app, method, path, origin):
    client = cors_app.test_client()
    r = client.open(path, method=method, headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in r.headers
    preflight = client.options(
        path, headers={"Origin": origin, "Access-Control-Request-Method": method}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


@pytest.mark.parametrize(("method", "path"), NO_CORS_ENDPOINTS)
def test_cors_never_on_browser_pages(cors_app, method, path):
    client = cors_app.test_client()
    r = client.open(path, method=method, headers={"Origin": SPA})
    assert cors_headers(r) == {}, (path, cors_headers(r))
    preflight = client.options(
        path, headers={"Origin": SPA, "Access-Control-Request-Method": method}
    )
    assert cors_headers(preflight) == {}


def test_cors_off_by_default(client, web_client):
    for method, path in CORS_ENDPOINTS:
        r = client.open(path, method=method, headers={"Origin": SPA})
        assert cors_headers(r) == {}, path


def test_cors_token_response_readable_by_spa_only(cors_app):
    """A real token request from the SPA: its origin may read the response, no cookie use."""
    c = make_client(cors_app, "SPA", public=True)
    client = cors_app.test_client()
    r = client.post(
        "/oauth/token",
        headers={"Origin": SPA},
        data={
            "grant_type": "authorization_code",
            "code": "nope",
            "client_id": c.client_id,
            "redirect_uri": TEST_REDIRECT,
            "code_verifier": "v" * 43,
        },
    )
    assert r.status_code == 400 and r.json["error"] == "invalid_grant"
    assert r.headers["Access-Control-Allow-Origin"] == SPA
    assert not re.search(r"(?i)set-cookie", "\n".join(f"{k}: {v}" for k, v in r.headers.items()))


def test_brute_force_limit_is_shared_by_replicas_through_redis(app_with):
    """With RATELIMIT_STORAGE_URI=redis://…, failures counted by one replica throttle the
    others: two separate apps (two processes' worth of state) share one budget."""
    import uuid

    import redis

    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        if __import__("os").environ.get("CI") == "true":
            raise
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    settings = {"RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": url}
    replica_a, replica_b = app_with(**settings), app_with(**settings)
    # Redis outlives the test: a fresh username and client address give a fresh budget.
    token = uuid.uuid4()
    victim = make_user(replica_a, f"victim-{token.hex[:8]}", "victim-password")
    ip = {"environ_base": {"REMOTE_ADDR": f"10.{token.bytes[0]}.{token.bytes[1]}.{token.bytes[2]}"}}
    for i in range(5):
        replica = replica_a if i % 2 == 0 else replica_b
        r = post_login(replica.test_client(), victim.username, "guess", **ip)
        assert r.status_code == 401, r.json
    assert_too_many(post_login(replica_b.test_client(), victim.username, victim.password, **ip))
    assert_too_many(post_login(replica_a.test_client(), victim.username, victim.password, **ip))
