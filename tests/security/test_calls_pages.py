"""Attacks on the call pages (`/calls`): reading or hanging up another person's calls, acting while signed out, cross-site forms (CSRF), stealing tokens from the browser, signing a victim in as the attacker, open redirects, framing and caching.

The pages sign people in as an OAuth client of the auth server and keep the tokens on the
server (call_api/web): the browser holds an opaque session id. Every test signs in through
the real flow against the in-process auth server (tests/call_api/web_helpers.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.call_api.helpers import NUMBER, event_rows, start
from tests.call_api.web_helpers import (
    SESSION_COOKIE,
    Pages,
    forward_to,
    pages_config,
    register_pages_client,
    session_rows,
)
from tests.conftest import Databases, Flow, call_config, make_client, make_user

PAGES = ("/calls", "/calls/history", "/calls/live.json")


@pytest.fixture
def pages_app(
    auth_app: Flask, call_app: Flask, databases: Databases, public_key_file: Path
) -> Iterator[Flask]:
    """A call API with its pages (on ``call_app``'s prepared, emptied database)."""
    from call_api import create_app

    config = call_config(
        databases, public_key_file, **pages_config(register_pages_client(auth_app))
    )
    app = create_app(config)
    forward_to(app, auth_app)
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def people(pages_app: Flask, auth_app: Flask) -> dict[str, Any]:
    """Alice and Bob, each signed in to the pages in their own browser, each with a live
    call made through the same app."""
    app_client = make_client(auth_app, "Click-to-call app")
    found: dict[str, Any] = {}
    for name in ("alice", "bob"):
        person = make_user(auth_app, name, f"{name}-password")
        token = Flow(auth_app.test_client()).token(person, app_client)["access_token"]
        browser = Pages(pages_app, auth_app)
        browser.sign_in(person)
        call = start(pages_app.test_client(), token, NUMBER if name == "alice" else "+14155550188")
        found[name] = {"user": person, "browser": browser, "call": call, "token": token}
    return found


def text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def still_live(pages_app: Flask, token_call: str) -> bool:
    return [e["type"] for e in event_rows(pages_app, token_call)] == ["call.queued"]


def test_a_person_never_sees_anothers_calls(people: dict[str, Any]) -> None:
    """Alice's live page, history (with any filter) and live feed show her calls only."""
    alice, bob = people["alice"], people["bob"]
    bobs = bob["call"]
    for path in PAGES:
        body = text(alice["browser"].get(path))
        assert bobs["token_call"] not in body, path
        assert bobs["number"] not in body, path
        assert alice["call"]["token_call"] in body, path
    app = bobs["client_id"]
    for args in ({"app": app}, {"state": "queued"}, {"state": "ongoing"}, {"page": "1"}):
        body = text(alice["browser"].get("/calls/history", query_string=args))
        assert bobs["token_call"] not in body
    assert [c["token_call"] for c in alice["browser"].get("/calls/live.json").json["calls"]] == [
        alice["call"]["token_call"]
    ]


def test_a_person_cannot_hang_up_anothers_call(people: dict[str, Any], pages_app: Flask) -> None:
    """Alice names Bob's call: a 404 for the confirmation and the hang-up; Bob's call stays."""
    alice, bob = people["alice"], people["bob"]
    target = f"/calls/{bob['call']['token_call']}/hangup"
    r = alice["browser"].get(target)
    assert r.status_code == 404
    assert NUMBER not in text(r) and bob["call"]["number"] not in text(r)
    r = alice["browser"].post(target, {"confirm": "yes"})
    assert r.status_code == 404
    assert "No such call" in text(r)
    assert still_live(pages_app, bob["call"]["token_call"])
    # The same answer as for a call that does not exist: nothing tells them apart.
    unknown = alice["browser"].post("/calls/nothing-here/hangup", {"confirm": "yes"})
    assert text(unknown) == text(r)


def test_signed_out_pages_redirect_to_the_sign_in(pages_app: Flask) -> None:
    """Signed out, every page sends the browser to sign in, and back here afterwards."""
    client = pages_app.test_client()
    expected = {
        "/calls": "/calls/login?next=/calls",
        "/calls/history?state=ended": "/calls/login?next=/calls/history?state%3Dended",
        "/calls/some-call/hangup": "/calls/login?next=/calls/some-call/hangup",
        "/calls/console": "/calls/login?next=/calls/console",
    }
    for path, login in expected.items():
        r = client.get(path)
        assert r.status_code == 302, path
        assert r.headers["Location"] == login
    r = client.get("/calls/live.json")
    assert r.status_code == 401
    assert r.json == {
        "error": "login_required",
        "error_description": "Sign in again to see your calls.",
        "login_url": "/calls/login?next=/calls",
    }


def test_signed_out_posts_change_nothing(people: dict[str, Any], pages_app: Flask) -> None:
    """A hang-up posted without a session (say a stale tab after sign-out): to the sign-in,
    and the call stays live."""
    alice = people["alice"]
    csrf = alice["browser"].csrf()
    alice["browser"].post("/calls/logout", {"csrf_token": csrf})
    r = alice["browser"].post(
        f"/calls/{alice['call']['token_call']}/hangup", {"confirm": "yes", "csrf_token": csrf}
    )
    assert r.status_code == 303
    assert r.headers["Location"] == "/calls/login?next=/calls"
    assert still_live(pages_app, alice["call"]["token_call"])


def test_csrf_hang_up_without_the_sessions_token_is_refused(
    people: dict[str, Any], pages_app: Flask
) -> None:
    """A cross-site form posted into Alice's signed-in browser — without a token, with a
    made-up one, or with the attacker's own valid token — hangs up nothing (403)."""
    alice = people["alice"]
    target = f"/calls/{alice['call']['token_call']}/hangup"
    for csrf in (None, "", "forged", people["bob"]["browser"].csrf(), alice["browser"].csrf()[:-1]):
        form = {"confirm": "yes"}
        if csrf is not None:
            form["csrf_token"] = csrf
        r = alice["browser"].calls.post(target, data=form)
        assert r.status_code == 403, csrf
        assert "This form has expired" in text(r)
        assert still_live(pages_app, alice["call"]["token_call"])
    # The header form of the token works (for scripts), and only with the right value.
    r = alice["browser"].calls.post(
        target, data={"confirm": "yes"}, headers={"X-CSRF-Token": "forged"}
    )
    assert r.status_code == 403
    r = alice["browser"].calls.post(
        target, data={"confirm": "yes"}, headers={"X-CSRF-Token": alice["browser"].csrf()}
    )
    assert r.status_code == 303


def test_the_cookie_is_an_opaque_id_and_no_page_shows_a_token(
    people: dict[str, Any], pages_app: Flask
) -> None:
    """Stealing from the browser: the session cookie is a random id (not a JWT, not a
    token), and no page, feed or header carries the access or refresh token."""
    alice = people["alice"]
    browser = alice["browser"]
    cookie = browser.session_cookie()
    assert cookie is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie)
    assert "." not in cookie  # not a JWT
    rows = {row["username"]: row for row in session_rows(pages_app)}
    mine = rows["alice"]
    assert mine["secret_hash"] == hashlib.sha256(cookie.encode()).hexdigest()
    assert cookie not in (mine["id"], mine["csrf"])
    secrets_ = [mine["access"], mine["refresh"]]
    # Stored encrypted, not as issued: a copy of the table is no set of tokens either.
    assert mine["stored_access"] != mine["access"]
    assert mine["refresh"] not in (mine["stored_refresh"] or "")
    responses = [
        browser.get(path)
        for path in (
            *PAGES,
            f"/calls/{alice['call']['token_call']}/hangup",
            "/calls/history?state=nonsense",
            "/calls/nowhere",
        )
    ]
    for r in responses:
        visible = text(r) + str(r.headers)
        for secret in secrets_:
            assert secret not in visible
            assert secret[-40:] not in visible  # not even its signature
    # The callback's answer (the one response that creates the session) carries none.
    r = Pages(pages_app, browser.auth.application).sign_in(alice["user"])
    for secret in secrets_:
        assert secret not in text(r) + str(r.headers)


def test_a_made_up_or_stolen_looking_cookie_signs_nobody_in(
    people: dict[str, Any], pages_app: Flask
) -> None:
    """Session fixation and guessing: a cookie value the server did not issue (or the
    session's public id, or its hash) is no session; the bad cookie is cleared."""
    alice = people["alice"]
    row = next(r for r in session_rows(pages_app) if r["username"] == "alice")
    for value in ("attacker-chosen-value", row["id"], row["secret_hash"], "x" * 500):
        client = pages_app.test_client()
        client.set_cookie(SESSION_COOKIE, value, path="/")
        r = client.get("/calls")
        assert r.status_code == 302
        assert r.headers["Location"] == "/calls/login?next=/calls"
        if len(value) < 100:
            assert SESSION_COOKIE + "=;" in r.headers.get("Set-Cookie", "")
    assert alice["browser"].get("/calls").status_code == 200


def test_login_csrf_the_attackers_callback_does_not_sign_the_victim_in(
    pages_app: Flask, auth_app: Flask
) -> None:
    """The attacker signs in, stops at the callback and sends that link to the victim: the
    victim's browser has no matching sign-in cookie, so nobody is signed in there."""
    mallory = make_user(auth_app, "mallory", "mallory-password")
    attacker = Pages(pages_app, auth_app)
    r = attacker.start()
    back = attacker.authorize(mallory, r.headers["Location"])
    victim = Pages(pages_app, auth_app)
    r = victim.calls.get(back.split("8889", 1)[1])
    assert r.status_code == 400
    assert victim.session_cookie() is None
    assert session_rows(pages_app) == []


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/calls", "/\\evil.example", "/account"]
)
def test_open_redirect_through_the_sign_in_next_is_refused(
    pages_app: Flask, auth_app: Flask, target: str
) -> None:
    """``next`` only ever leads to a page under /calls on this site."""
    person = make_user(auth_app, "carol", "carol-password")
    r = Pages(pages_app, auth_app).sign_in(person, target)
    assert r.status_code == 302
    assert r.headers["Location"] == "/calls"


def test_a_non_operator_cannot_reach_the_console(people: dict[str, Any]) -> None:
    """A signed-in user without the admin role: the console is a 403 page."""
    r = people["alice"]["browser"].get("/calls/console")
    assert r.status_code == 403
    assert "Only operators may see this page" in text(r)


def test_a_session_without_the_call_scope_sees_no_calls(pages_app: Flask, auth_app: Flask) -> None:
    """A session whose token lacks ``call`` (a narrower consent): the 403 page, no calls."""
    from sqlalchemy import update

    from call_api.models import WebSession

    person = make_user(auth_app, "dave", "dave-password")
    browser = Pages(pages_app, auth_app)
    browser.sign_in(person)
    db = pages_app.extensions["sqlalchemy"]
    with pages_app.app_context():
        db.session.execute(update(WebSession).values(scope="admin"))
        db.session.commit()
    r = browser.get("/calls")
    assert r.status_code == 403
    assert "does not cover your calls" in text(r)


def test_pages_cannot_be_framed_or_cached(people: dict[str, Any]) -> None:
    """Every page: no-store (personal data), no framing (clickjacking on "Hang up"), no
    script from elsewhere or inline (CSP)."""
    browser = people["alice"]["browser"]
    for path in (*PAGES, f"/calls/{people['alice']['call']['token_call']}/hangup"):
        r = browser.get(path)
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Frame-Options"] == "DENY"
        csp = r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert "unsafe-inline" not in csp
    for path in ("/calls/login", "/calls/signed-out"):
        r = browser.calls.get(path)
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Frame-Options"] == "DENY"
