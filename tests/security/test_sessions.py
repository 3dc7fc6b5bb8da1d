"""Sessions that end when they should (security round two, §3).

The login session lives on the server (``login_sessions``); the cookie carries only its
random id. A copy of the cookie taken before logout, a password change, disabling the user
or "sign out everywhere" is signed out afterwards: at ``/oauth/auth`` it is sent to the login
page instead of getting a code. Sessions also end after ``SESSION_IDLE_TIMEOUT`` without
use and ``SESSION_LIFETIME`` after sign-in, whatever the cookie says (the clock is patched,
nothing sleeps).
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.auth_server.helpers import JSON, ensure_csrf, pkce_params, sign_in
from tests.conftest import ClientInfo, UserInfo

COOKIE = "clickcall_auth"
IDLE = 2 * 3600  # the defaults: SESSION_IDLE_TIMEOUT
LIFETIME = 8 * 3600  # SESSION_LIFETIME


@pytest.fixture
def clock(monkeypatch):
    """The sessions' clock, moved by hand: ``clock.now += 3600``."""
    import time

    from auth_server import sessions

    class Clock:
        now = int(time.time())

    monkeypatch.setattr(sessions, "now", lambda: Clock.now)
    return Clock


def browser(app: Flask, user: UserInfo, web_client: ClientInfo, **environ: str) -> FlaskClient:
    """A browser signed in as ``user`` that has granted ``web_client`` (gets codes at once)."""
    client = app.test_client()
    if environ:
        client.environ_base.update(environ)
    params = pkce_params(web_client)[1]
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.headers["Location"].startswith("/auth/login?")
    r = sign_in(client, user, **params)
    if r.headers["Location"].startswith("/auth/grant?"):
        r = client.post(
            "/auth/grant", data={**params, "grant": "true", "csrf_token": ensure_csrf(client)}
        )
    assert r.headers["Location"].startswith(web_client.redirect_uris[0] + "?code=")
    return client


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def stolen(app: Flask, cookie: str) -> FlaskClient:
    """Another machine replaying a copy of the session cookie."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, cookie)
    return thief


def authorize(client: FlaskClient, web_client: ClientInfo):
    return client.get("/oauth/auth?" + urlencode(pkce_params(web_client)[1]))


def assert_gets_code(client: FlaskClient, web_client: ClientInfo) -> None:
    r = authorize(client, web_client)
    assert r.status_code == 302, r.get_data(as_text=True)
    assert r.headers["Location"].startswith(web_client.redirect_uris[0] + "?code="), r.headers


def assert_signed_out(client: FlaskClient, web_client: ClientInfo) -> None:
    r = authorize(client, web_client)
    assert r.status_code == 302, r.get_data(as_text=True)
    assert r.headers["Location"].startswith("/auth/login?"), r.headers["Location"]
    with client.session_transaction() as sess:
        assert "uid" not in sess and "sid" not in sess


def logout(client: FlaskClient, **data: str):
    return client.post(
        "/auth/logout", headers=JSON, data={"csrf_token": ensure_csrf(client), **data}
    )


def test_session_copied_cookie_is_signed_out_after_logout(auth_app, user, web_client):
    owner = browser(auth_app, user, web_client)
    copy = session_cookie(owner)
    assert_gets_code(stolen(auth_app, copy), web_client)  # the copy works while signed in
    r = logout(owner)
    assert (r.status_code, r.json) == (200, {"status": "signed_out"})
    assert_signed_out(stolen(auth_app, copy), web_client)
    assert_signed_out(owner, web_client)


def test_session_copied_cookie_is_signed_out_after_password_change(auth_app, cli, user, web_client):
    owner = browser(auth_app, user, web_client)
    copy = session_cookie(owner)
    result = cli("users", "set-password", "alice", "--password-stdin", input="new-password-1\n")
    assert result.exit_code == 0, result.output
    assert_signed_out(stolen(auth_app, copy), web_client)
    assert_signed_out(owner, web_client)
    # The owner signs in with the new password; the old copy stays out.
    new = UserInfo(user.id, user.username, "new-password-1")
    assert sign_in(owner, new).status_code == 200
    assert_gets_code(owner, web_client)
    assert_signed_out(stolen(auth_app, copy), web_client)


def test_session_copied_cookie_stays_signed_out_after_disable_and_enable(
    auth_app, cli, user, web_client
):
    owner = browser(auth_app, user, web_client)
    copy = session_cookie(owner)
    assert cli("users", "disable", "alice").exit_code == 0
    assert cli("users", "enable", "alice").exit_code == 0
    # Enabling lets the user sign in again; it does not bring back the sessions.
    assert_signed_out(stolen(auth_app, copy), web_client)
    assert_signed_out(owner, web_client)


def test_session_sign_out_everywhere_from_another_browser(auth_app, user, web_client):
    laptop = browser(auth_app, user, web_client)
    phone = browser(auth_app, user, web_client)
    copy = session_cookie(laptop)
    r = logout(phone, everywhere="true")
    assert r.status_code == 200
    assert r.json == {"status": "signed_out", "everywhere": True, "sessions_ended": 2}
    for client in (laptop, stolen(auth_app, copy), phone):
        assert_signed_out(client, web_client)


def test_session_sign_out_everywhere_page(auth_app, user, web_client):
    laptop = browser(auth_app, user, web_client)
    r = laptop.post("/auth/logout", data={"csrf_token": ensure_csrf(laptop), "everywhere": "true"})
    assert r.status_code == 200
    assert "signed out in every browser (1 session ended)" in r.get_data(as_text=True)


def test_session_cli_sign_out_ends_every_session(auth_app, cli, user, web_client):
    laptop, phone = browser(auth_app, user, web_client), browser(auth_app, user, web_client)
    copy = session_cookie(laptop)
    result = cli("users", "sign-out", "ALICE")
    assert (result.exit_code, result.output) == (0, "signed out ALICE (2 sessions ended)\n")
    for client in (laptop, phone, stolen(auth_app, copy)):
        assert_signed_out(client, web_client)
    result = cli("users", "sign-out", "nobody")
    assert result.exit_code == 1
    assert "No user named 'nobody'." in result.output


def test_session_signing_in_again_ends_the_previous_session(auth_app, user, web_client):
    """A cookie copied before the browser signed in again (same or another user) is out."""
    owner = browser(auth_app, user, web_client)
    copy = session_cookie(owner)
    assert sign_in(owner, user).status_code == 200
    assert_gets_code(owner, web_client)
    assert_signed_out(stolen(auth_app, copy), web_client)


def test_session_idle_timeout(auth_app, user, web_client, clock):
    owner = browser(auth_app, user, web_client)
    copy = session_cookie(owner)
    clock.now += IDLE - 60
    assert_gets_code(owner, web_client)  # used: the idle clock starts again
    clock.now += IDLE
    assert_gets_code(stolen(auth_app, copy), web_client)
    clock.now += IDLE + 1
    assert_signed_out(stolen(auth_app, copy), web_client)
    assert_signed_out(owner, web_client)


def test_session_idle_timeout_is_a_setting(auth_app, user, web_client, clock):
    auth_app.config["SESSION_IDLE_TIMEOUT"] = 300  # SESSION_IDLE_TIMEOUT=300
    owner = browser(auth_app, user, web_client)
    clock.now += 300
    assert_gets_code(owner, web_client)
    clock.now += 301
    assert_signed_out(owner, web_client)


def test_session_absolute_lifetime_even_when_busy(auth_app, user, web_client, clock):
    owner = browser(auth_app, user, web_client)
    start = clock.now
    while clock.now + IDLE // 2 <= start + LIFETIME:
        clock.now += IDLE // 2
        assert_gets_code(owner, web_client)
    clock.now = start + LIFETIME + 1
    assert_signed_out(owner, web_client)


def test_session_last_seen_written_at_most_once_a_minute(auth_app, user, web_client, clock):
    from auth_server.extensions import db
    from auth_server.models import LoginSession

    owner = browser(auth_app, user, web_client)

    def last_seen() -> int:
        with auth_app.app_context():
            return int(db.session.scalar(select(LoginSession.last_seen_at)))

    first = last_seen()
    clock.now += 59
    assert_gets_code(owner, web_client)
    assert last_seen() == first
    clock.now += 1
    assert_gets_code(owner, web_client)
    assert last_seen() == first + 60


def test_session_cookie_carries_a_random_id_the_server_keeps_hashed(auth_app, user, web_client):
    from auth_server.extensions import db
    from auth_server.models import LoginSession

    owner = browser(auth_app, user, web_client, HTTP_USER_AGENT="Mozilla/5.0 Firefox/128.0")
    with owner.session_transaction() as sess:
        sid = sess["sid"]
    with auth_app.app_context():
        rows = list(db.session.scalars(select(LoginSession)))
    assert len(rows) == 1
    assert rows[0].token_hash == hashlib.sha256(sid.encode()).hexdigest() != sid
    assert (rows[0].user_id, rows[0].ended_at) == (user.id, None)
    assert rows[0].user_agent == "Mozilla/5.0 Firefox/128.0"


def test_session_list_for_an_account_page(auth_app, user, web_client):
    from auth_server import sessions

    laptop = browser(
        auth_app,
        user,
        web_client,
        HTTP_USER_AGENT="Mozilla/5.0 (X11) Gecko/20100101 Firefox/128.0",
        REMOTE_ADDR="198.51.100.7",
    )
    phone = browser(
        auth_app,
        user,
        web_client,
        HTTP_USER_AGENT="Mozilla/5.0 (iPhone) AppleWebKit/605 Version/17 Mobile Safari/604.1",
        REMOTE_ADDR="203.0.113.9",
    )
    with phone.session_transaction() as sess:
        phone_sid = sess["sid"]
    with auth_app.app_context():
        listed = sessions.list_sessions(user.id, current_token=phone_sid)
    assert sorted((s["browser"], s["ip"], s["current"]) for s in listed) == [
        ("Firefox", "198.51.100.7", False),
        ("Safari", "203.0.113.9", True),
    ]
    assert all(isinstance(s["last_seen_at"], int) for s in listed)
    laptop_id = next(s["id"] for s in listed if not s["current"])
    with auth_app.app_context():
        assert sessions.end_session_by_id("someone-else", laptop_id) is False
        assert sessions.end_session_by_id(user.id, laptop_id) is True
        assert [s["browser"] for s in sessions.list_sessions(user.id)] == ["Safari"]
    assert_signed_out(laptop, web_client)
    assert_gets_code(phone, web_client)
