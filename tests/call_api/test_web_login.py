"""The call API's pages sign people in as an OAuth client of the auth server
(call_api/web/login.py, call_api/web/session.py): code + PKCE, a server-side session,
refresh, sign-out — against the real auth server (in process, through the pages' HTTP
transport: tests/call_api/web_helpers.py)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from tests.call_api.web_helpers import (
    CALLBACK,
    SESSION_COOKIE,
    FlaskAdapter,
    Pages,
    forward_to,
    pages_config,
    register_pages_client,
    session_rows,
    set_session_columns,
)
from tests.conftest import ISSUER, ClientInfo, UserInfo, make_user, query_of

LOGIN_COOKIE = "clickcall_calls_login"


@pytest.fixture
def pages_client(auth_app: Flask) -> ClientInfo:
    return register_pages_client(auth_app)


@pytest.fixture
def pages_app(make_call_app: Any, pages_client: ClientInfo) -> Flask:
    return make_call_app(**pages_config(pages_client))  # type: ignore[no-any-return]


@pytest.fixture
def transport(pages_app: Flask, auth_app: Flask) -> FlaskAdapter:
    return forward_to(pages_app, auth_app)


@pytest.fixture
def browser(pages_app: Flask, auth_app: Flask, transport: FlaskAdapter) -> Pages:
    return Pages(pages_app, auth_app)


def set_cookie_header(response: Any, name: str) -> str:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(name + "="):
            return str(header)
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers}")


def page_text(response: Any) -> str:
    return str(response.get_data(as_text=True))


# --- signing in ---------------------------------------------------------------------------


def test_login_sends_the_browser_to_the_authorization_endpoint_with_pkce(
    browser: Pages, pages_client: ClientInfo
) -> None:
    r = browser.start("/calls/history?state=ended")
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith(ISSUER + "/oauth/auth?")
    params = query_of(location)
    assert set(params) == {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
    assert params["response_type"] == "code"
    assert params["client_id"] == pages_client.client_id
    assert params["redirect_uri"] == CALLBACK
    assert params["scope"] == "call admin"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 43
    cookie = set_cookie_header(r, LOGIN_COOKIE)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/calls/callback" in cookie
    assert "Max-Age=600" in cookie
    assert "Secure" not in cookie  # http:// in development
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    # The state, verifier and next page are encrypted: none of them is readable in it.
    assert params["state"] not in value
    assert "history" not in base64.urlsafe_b64decode(value + "==").decode("latin-1")
    # A second sign-in start gets a new state and challenge.
    again = query_of(browser.start().headers["Location"])
    assert again["state"] != params["state"]
    assert again["code_challenge"] != params["code_challenge"]


def test_the_callback_signs_in_and_goes_to_the_page_asked_for(
    browser: Pages, pages_app: Flask, user: UserInfo, transport: FlaskAdapter
) -> None:
    r = browser.sign_in(user, "/calls/history?state=ended")
    assert r.status_code == 302
    assert r.headers["Location"] == "/calls/history?state=ended"
    cookie = set_cookie_header(r, SESSION_COOKIE)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/;" in cookie or cookie.endswith("Path=/")
    assert "Secure" not in cookie
    assert "Expires" not in cookie and "Max-Age" not in cookie  # gone with the browser
    # The sign-in cookie is spent.
    assert LOGIN_COOKIE + "=;" in set_cookie_header(r, LOGIN_COOKIE).replace('=""', "=")
    # The token request: client_secret_basic, the PKCE verifier, the registered redirect URI.
    [token_request] = [s for s in transport.sent if s.url == ISSUER + "/oauth/token"]
    assert token_request.headers["Authorization"].startswith("Basic ")
    body = query_of("?" + str(token_request.body))
    assert body["grant_type"] == "authorization_code"
    assert body["redirect_uri"] == CALLBACK
    assert 43 <= len(body["code_verifier"]) <= 128
    [row] = session_rows(pages_app)
    assert row["subject"] == user.id
    assert row["username"] == "alice"
    assert row["scope"] == "call"  # a user without the admin role: narrowed to call
    assert row["secret_hash"] == hashlib.sha256(browser.session_cookie().encode()).hexdigest()
    page = browser.get("/calls")
    assert page.status_code == 200
    assert "Signed in as <strong>alice</strong>" in page_text(page)


def test_an_operator_session_carries_admin(
    auth_app: Flask, browser: Pages, pages_app: Flask
) -> None:
    operator = make_user(auth_app, "olga", "olga-password", role="admin")
    browser.sign_in(operator)
    [row] = session_rows(pages_app)
    assert row["scope"].split() == ["call", "admin"]
    page = page_text(browser.get("/calls"))
    assert 'href="/calls/console"' in page  # the navigation shows the console to operators


def test_a_second_sign_in_replaces_the_first_session(
    browser: Pages, pages_app: Flask, user: UserInfo
) -> None:
    browser.sign_in(user)
    first = browser.session_cookie()
    r = browser.calls.get("/calls/login")
    assert r.status_code == 302
    assert r.headers["Location"] == "/calls"  # already signed in: straight to the page
    # Another tab started signing in before this session existed: its callback replaces it.
    browser.calls.delete_cookie(SESSION_COOKIE, path="/")
    r = browser.start()
    browser.calls.set_cookie(SESSION_COOKIE, first or "", path="/")
    back = browser.authorize(user, r.headers["Location"])
    r = browser.calls.get("/calls/callback", query_string=query_of(back))
    assert r.status_code == 302
    assert browser.session_cookie() != first
    assert len(session_rows(pages_app)) == 1


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/calls",
        "//evil.example/calls",
        "/\\evil.example/calls",
        "/calls/../account",
        "/calls/./history",
        "/account",
        "/callsx",
        "http:/calls",
        "/calls\t/x",
        "/calls\n",
        "javascript:alert(1)",
        "calls",
        "",
        None,
        "/calls/" + "x" * 2000,
    ],
)
def test_next_never_leaves_the_pages(target: str | None) -> None:
    """(The whole flow with such a ``next``: tests/security/test_calls_pages.py.)"""
    from call_api.web.session import safe_next

    assert safe_next(target) == "/calls"


@pytest.mark.parametrize(
    "target", ["/calls", "/calls/history?state=ended&page=2", "/calls/console/users"]
)
def test_next_may_name_any_page(target: str) -> None:
    from call_api.web.session import safe_next

    assert safe_next(target) == target


def test_the_callback_refuses_a_state_it_did_not_issue(
    browser: Pages, pages_app: Flask, user: UserInfo
) -> None:
    r = browser.start()
    back = browser.authorize(user, r.headers["Location"])
    params = query_of(back)
    params["state"] = "x" * 43
    r = browser.calls.get("/calls/callback", query_string=params)
    assert r.status_code == 400
    assert "This sign-in cannot be completed" in page_text(r)
    assert 'href="/calls/login?next=/calls"' in page_text(r)
    assert session_rows(pages_app) == []


def test_a_callback_in_another_browser_signs_nobody_in(
    browser: Pages, pages_app: Flask, auth_app: Flask, user: UserInfo
) -> None:
    """Login CSRF: an attacker's code and state, delivered to a victim's browser (which has
    no matching sign-in cookie), never sign the victim in as the attacker."""
    r = browser.start()
    back = browser.authorize(user, r.headers["Location"])
    victim = Pages(pages_app, auth_app)
    r = victim.calls.get("/calls/callback", query_string=query_of(back))
    assert r.status_code == 400
    assert SESSION_COOKIE not in r.headers.get("Set-Cookie", "")
    assert session_rows(pages_app) == []


def test_an_expired_sign_in_cookie_is_refused(
    browser: Pages, pages_app: Flask, user: UserInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = browser.start()
    back = browser.authorize(user, r.headers["Location"])
    import time as real_time

    later = real_time.time() + 601
    monkeypatch.setattr("cryptography.fernet.time.time", lambda: later)
    r = browser.calls.get("/calls/callback", query_string=query_of(back))
    assert r.status_code == 400
    assert session_rows(pages_app) == []


def test_a_refused_consent_says_so(browser: Pages, pages_app: Flask, user: UserInfo) -> None:
    r = browser.sign_in(user, consent=False)
    assert r.status_code == 403
    text = page_text(r)
    assert "You did not allow access" in text
    assert "Traceback" not in text
    assert session_rows(pages_app) == []


def test_a_code_the_auth_server_refuses_is_a_clear_page(
    browser: Pages, pages_app: Flask, user: UserInfo
) -> None:
    r = browser.start()
    back = browser.authorize(user, r.headers["Location"])
    params = query_of(back)
    params["code"] = "not-a-code"
    r = browser.calls.get("/calls/callback", query_string=params)
    assert r.status_code == 400
    assert "The auth server refused the sign-in code" in page_text(r)
    assert session_rows(pages_app) == []


def test_a_callback_without_code_is_a_clear_page(browser: Pages, user: UserInfo) -> None:
    r = browser.start()
    back = browser.authorize(user, r.headers["Location"])
    params = query_of(back)
    del params["code"]
    r = browser.calls.get("/calls/callback", query_string=params)
    assert r.status_code == 400
    assert "without a code" in page_text(r)


def test_an_unreachable_auth_server_is_a_503_page(
    browser: Pages, transport: FlaskAdapter, user: UserInfo, pages_app: Flask
) -> None:
    r = browser.start()
    back = browser.authorize(user, r.headers["Location"])
    transport.down = True
    r = browser.calls.get("/calls/callback", query_string=query_of(back))
    assert r.status_code == 503
    assert "The sign-in service is not answering" in page_text(r)
    # Metadata unknown too (a fresh app): signing in is a 503 page as well.
    pages_app.extensions.pop("clickcall_web_metadata")
    r = browser.start()
    assert r.status_code == 503
    assert "cannot be reached" in page_text(r)


def test_metadata_for_another_issuer_is_not_used(
    browser: Pages, pages_app: Flask, transport: FlaskAdapter
) -> None:
    import requests

    class Liar(FlaskAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:
            response = super().send(request, **kwargs)
            if request.url.endswith("oauth-authorization-server"):
                response._content = response.content.replace(
                    ISSUER.encode(), b"https://evil.example"
                )
            return response

    session = requests.Session()
    session.mount(ISSUER, Liar(transport.app))
    pages_app.extensions["clickcall_web_http"] = session
    r = browser.start()
    assert r.status_code == 503


def test_the_pages_say_how_to_set_them_up_when_no_client_is_configured(
    make_call_app: Any,
) -> None:
    app = make_call_app()
    client = app.test_client()
    for path in ("/calls", "/calls/history", "/calls/login", "/calls/callback?code=x&state=y"):
        r = client.get(path)
        assert r.status_code == 503, path
        text = page_text(r)
        assert "CALL_WEB_CLIENT_ID" in text and "CALL_WEB_CLIENT_SECRET" in text
        assert "/calls/callback" in text


# --- every request: validated, refreshed, or signed out -----------------------------------


def test_an_expired_access_token_is_refreshed_and_the_refresh_token_rotates(
    browser: Pages, pages_app: Flask, user: UserInfo, transport: FlaskAdapter
) -> None:
    browser.sign_in(user)
    [before] = session_rows(pages_app)
    set_session_columns(pages_app, access_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    r = browser.get("/calls")
    assert r.status_code == 200
    [after] = session_rows(pages_app)
    assert after["access"] != before["access"]
    assert after["refresh"] != before["refresh"]
    assert after["access_expires_at"] > datetime.now(UTC) + timedelta(minutes=30)
    assert after["id"] == before["id"]
    grants = [
        query_of("?" + str(s.body))["grant_type"]
        for s in transport.sent
        if s.url == ISSUER + "/oauth/token"
    ]
    assert grants == ["authorization_code", "refresh_token"]
    # The next request uses the new token: no second refresh.
    assert browser.get("/calls").status_code == 200
    assert len([s for s in transport.sent if s.url == ISSUER + "/oauth/token"]) == 2


def test_a_refused_refresh_ends_the_session(
    browser: Pages, pages_app: Flask, auth_app: Flask, user: UserInfo, pages_client: ClientInfo
) -> None:
    browser.sign_in(user)
    [row] = session_rows(pages_app)
    auth = auth_app.test_client()
    r = auth.post(
        "/oauth/revoke",
        data={"token": row["refresh"], "token_type_hint": "refresh_token"},
        headers=pages_client.basic(),
    )
    assert r.status_code == 200
    set_session_columns(pages_app, access_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    r = browser.get("/calls/history")
    assert r.status_code == 302
    assert r.headers["Location"] == "/calls/login?next=/calls/history"
    assert SESSION_COOKIE + "=;" in set_cookie_header(r, SESSION_COOKIE)
    assert session_rows(pages_app) == []


def test_a_disabled_user_is_signed_out_at_the_next_refresh(
    browser: Pages, pages_app: Flask, auth_app: Flask, user: UserInfo
) -> None:
    from auth_server.accounts import disable_user

    browser.sign_in(user)
    with auth_app.app_context():
        disable_user(user.username)
    set_session_columns(pages_app, access_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert browser.get("/calls").status_code == 302
    assert session_rows(pages_app) == []


@pytest.fixture
def fed(pages_app: Flask, auth_app: Flask) -> Iterator[Any]:
    """The pages' app reading the in-process auth server's revocation feed (polled by the
    test)."""
    from call_api.revocations import RevocationFeed

    client = auth_app.test_client()

    def fetch(after: int) -> dict[str, Any]:
        return dict(client.get(f"/oauth/revocations?after={after}").json)  # type: ignore[arg-type]

    feed = RevocationFeed("http://in-process", 3600, 5, fetch=fetch)
    pages_app.extensions["clickcall_revocations"] = feed
    yield feed
    feed.stop()


def test_a_revoked_token_ends_the_session_at_once(
    browser: Pages, pages_app: Flask, auth_app: Flask, user: UserInfo, fed: Any
) -> None:
    """Disabled at the auth server: the revocation feed refuses the stored access token,
    though it has not expired, and the next page signs the person out."""
    from auth_server.accounts import disable_user

    browser.sign_in(user)
    assert browser.get("/calls").status_code == 200
    with auth_app.app_context():
        disable_user(user.username)
    assert fed.poll()
    r = browser.get("/calls")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/calls/login")
    assert session_rows(pages_app) == []
    r = browser.get("/calls/live.json")
    assert r.status_code == 401
    assert r.json["error"] == "login_required"


def test_an_unreachable_auth_server_at_refresh_time_keeps_the_session(
    browser: Pages, pages_app: Flask, user: UserInfo, transport: FlaskAdapter
) -> None:
    browser.sign_in(user)
    set_session_columns(pages_app, access_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    transport.down = True
    r = browser.get("/calls")
    assert r.status_code == 503
    assert "cannot be reached just now" in page_text(r)
    assert len(session_rows(pages_app)) == 1
    transport.down = False
    assert browser.get("/calls").status_code == 200


def test_a_session_ends_after_its_lifetime(
    browser: Pages, pages_app: Flask, user: UserInfo
) -> None:
    browser.sign_in(user)
    set_session_columns(pages_app, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert browser.get("/calls").status_code == 302
    assert session_rows(pages_app) == []


def test_a_session_whose_key_changed_is_ended(
    browser: Pages, pages_app: Flask, user: UserInfo
) -> None:
    """Another ``CALL_SECRET_KEY``: the stored tokens cannot be read; sign in again."""
    browser.sign_in(user)
    pages_app.config["CALL_SECRET_KEY"] = "another-key-another-key-another-key"
    pages_app.extensions.pop("clickcall_web_cipher")
    assert browser.get("/calls").status_code == 302
    assert session_rows(pages_app) == []


# --- signing out --------------------------------------------------------------------------


def test_sign_out_ends_the_session_and_revokes_the_refresh_token(
    browser: Pages, pages_app: Flask, auth_app: Flask, user: UserInfo, pages_client: ClientInfo
) -> None:
    browser.sign_in(user)
    [row] = session_rows(pages_app)
    r = browser.post("/calls/logout")
    assert r.status_code == 303
    assert r.headers["Location"] == "/calls/signed-out"
    assert SESSION_COOKIE + "=;" in set_cookie_header(r, SESSION_COOKIE)
    assert session_rows(pages_app) == []
    # The refresh token no longer works at the auth server.
    r = auth_app.test_client().post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": row["refresh"]},
        headers=pages_client.basic(),
    )
    assert r.status_code == 400
    assert r.json["error"] == "invalid_grant"
    page = browser.get("/calls/signed-out")
    assert page.status_code == 200
    assert "You are signed out" in page_text(page)
    assert browser.get("/calls").status_code == 302


def test_sign_out_works_when_the_auth_server_is_away(
    browser: Pages, pages_app: Flask, user: UserInfo, transport: FlaskAdapter
) -> None:
    browser.sign_in(user)
    csrf = browser.csrf()
    transport.down = True
    r = browser.post("/calls/logout", {"csrf_token": csrf})
    assert r.status_code == 303
    assert session_rows(pages_app) == []


def test_sign_out_needs_the_csrf_token(browser: Pages, pages_app: Flask, user: UserInfo) -> None:
    browser.sign_in(user)
    r = browser.post("/calls/logout", csrf=False)
    assert r.status_code == 403
    assert "This form has expired" in page_text(r)
    assert len(session_rows(pages_app)) == 1


def test_sign_out_when_signed_out_goes_to_the_sign_in(browser: Pages) -> None:
    r = browser.post("/calls/logout", csrf=False)
    assert r.status_code == 303
    assert urlsplit(r.headers["Location"]).path == "/calls/login"


# --- settings -----------------------------------------------------------------------------


def production(**extra: str) -> dict[str, str]:
    return {
        "APP_ENV": "production",
        "CALL_DATABASE_URL": "postgresql://calls@db/calls",
        "AUTH_ISSUER": "https://auth.example",
        "CALL_WEB_CLIENT_ID": "calls-web",
        "CALL_WEB_CLIENT_SECRET": "s3cret",
        "CALL_WEB_URL": "https://calls.example",
        "CALL_SECRET_KEY": "k" * 32,
        **extra,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CALL_SECRET_KEY": ""}, "APP_ENV=production refuses CALL_SECRET_KEY"),
        ({"CALL_SECRET_KEY": "short"}, "APP_ENV=production refuses CALL_SECRET_KEY"),
        ({"CALL_WEB_CLIENT_SECRET": ""}, "APP_ENV=production refuses CALL_WEB_CLIENT_SECRET"),
        ({"CALL_WEB_URL": "http://calls.example"}, "APP_ENV=production refuses CALL_WEB_URL"),
        ({"CALL_WEB_URL": "calls.example"}, "CALL_WEB_URL must be an http:// or https:// URL"),
    ],
)
def test_production_refuses_unsafe_page_settings(change: dict[str, str], message: str) -> None:
    from call_api.config import finalise, load_config
    from shared.config import ConfigError

    cfg = load_config(production(**change))
    with pytest.raises(ConfigError, match=message):
        finalise(cfg)


def test_production_without_the_pages_needs_none_of_their_settings() -> None:
    from call_api.config import finalise, load_config

    cfg = load_config(
        production(CALL_WEB_CLIENT_ID="", CALL_WEB_CLIENT_SECRET="", CALL_SECRET_KEY="")
    )
    finalise(cfg)
    assert cfg["CALL_SECRET_KEY"] == ""
    cfg = load_config(production(CALL_WEB_URL="https://calls.example/"))
    finalise(cfg)
    assert cfg["CALL_WEB_URL"] == "https://calls.example"


def test_https_pages_set_secure_cookies(
    auth_app: Flask, make_call_app: Any, user: UserInfo
) -> None:
    client = register_pages_client(auth_app, "https://calls.example/calls/callback")
    app = make_call_app(**pages_config(client, CALL_WEB_URL="https://calls.example"))
    forward_to(app, auth_app)
    browser = Pages(app, auth_app)
    browser.calls.environ_base["wsgi.url_scheme"] = "https"
    r = browser.start()
    assert query_of(r.headers["Location"])["redirect_uri"] == "https://calls.example/calls/callback"
    assert "Secure" in set_cookie_header(r, LOGIN_COOKIE)
    r = browser.sign_in(user)
    assert r.status_code == 302
    assert "Secure" in set_cookie_header(r, SESSION_COOKIE)


@pytest.mark.parametrize("iss", ["https://evil.example", None])
def test_the_callback_refuses_an_answer_from_another_issuer(
    browser: Pages, pages_app: Flask, user: UserInfo, iss: str | None
) -> None:
    """RFC 9207: the auth server advertises the iss parameter, so an answer naming another
    issuer (a mix-up) or none at all signs nobody in; the genuine answer carries ours."""
    r = browser.start()
    back = browser.authorize(user, r.headers["Location"])
    params = query_of(back)
    assert params["iss"] == pages_app.config["AUTH_ISSUER"]
    if iss is None:
        del params["iss"]
    else:
        params["iss"] = iss
    r = browser.calls.get("/calls/callback", query_string=params)
    assert r.status_code == 400
    assert "This sign-in came back from another server" in page_text(r)
    assert session_rows(pages_app) == []
