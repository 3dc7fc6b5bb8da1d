"""Attacks on the account page (`/account`): cross-site forms (CSRF), reaching another
user's sessions or apps, acting while signed out, open redirects through the login form's
`next`, password guessing through the change form, framing and caching.

Every change on the page is a POST that must carry the session's CSRF token; every lookup
is by the signed-in user's id, so another user's session or an app the user never allowed
is a 404 and nothing changes.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy import update as sa_update

from tests.auth_server.helpers import JSON, ensure_csrf, sign_in
from tests.conftest import ClientInfo, Flow, UserInfo, make_user

CSRF_REFUSED = {
    "error": "invalid_request",
    "error_description": (
        "The form is stale or was not sent by this site (CSRF check failed); reload it."
    ),
}
COOKIE = "clickcall_auth"


def browser(app: Flask, user: UserInfo) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, user).status_code == 200
    return client


def signed_in(client: FlaskClient) -> bool:
    return client.get("/account").status_code == 200


def session_ids(app: Flask, user: UserInfo) -> list[int]:
    from auth_server import sessions

    with app.app_context():
        return sorted(row["id"] for row in sessions.list_sessions(user.id))


def consents(app: Flask, user: UserInfo) -> list[str]:
    from auth_server.extensions import db
    from auth_server.models import Consent

    with app.app_context():
        found = sorted(
            db.session.scalars(select(Consent.client_id).where(Consent.user_id == user.id))
        )
        db.session.remove()
        return found


def password_hash(app: Flask, user: UserInfo) -> str:
    from auth_server.extensions import db
    from auth_server.models import User

    with app.app_context():
        value = db.session.get(User, user.id).password_hash
        db.session.remove()
        return str(value)


def feed(client: FlaskClient) -> list[dict[str, Any]]:
    return list(client.get("/oauth/revocations?after=0").json["revocations"])


def assert_csrf_refused(r: Any) -> None:
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.json == CSRF_REFUSED


@pytest.fixture
def granted(auth_app: Flask, user: UserInfo, web_client: ClientInfo) -> FlaskClient:
    """Alice's browser, signed in, having allowed ``web_client`` (tokens issued)."""
    flow = Flow(auth_app.test_client())
    flow.token(user, web_client)
    return flow.client


# --- CSRF -------------------------------------------------------------------------------------

FORMS = [
    ("/account/apps/revoke", {"end_calls": "yes"}),
    ("/account/sessions/{sid}/sign-out", {}),
    ("/account/sign-out-everywhere", {}),
    (
        "/account/password",
        {"current_password": "alice-password", "new_password": "n3w-password", "confirm_password": "n3w-password"},
    ),
]  # fmt: skip


def _target(app: Flask, user: UserInfo, path: str, data: dict[str, str], web_client: ClientInfo):
    sid = session_ids(app, user)[0]
    return path.format(sid=sid), {**data, "client_id": web_client.client_id}


@pytest.mark.parametrize("path, data", FORMS, ids=[f[0] for f in FORMS])
def test_csrf_on_account_forms_without_token_is_refused(
    auth_app, granted, user, web_client, path, data
):
    """A cross-site form posted into a signed-in browser (no CSRF token) changes nothing."""
    path, data = _target(auth_app, user, path, data, web_client)
    before = (consents(auth_app, user), session_ids(auth_app, user), password_hash(auth_app, user))
    assert_csrf_refused(granted.post(path, data=data, headers=JSON))
    after = (consents(auth_app, user), session_ids(auth_app, user), password_hash(auth_app, user))
    assert after == before
    assert [e for e in feed(granted) if e["kind"] == "end_calls"] == []
    assert signed_in(granted)


@pytest.mark.parametrize("path, data", FORMS, ids=[f[0] for f in FORMS])
def test_csrf_token_of_another_session_on_account_forms_is_refused(
    auth_app, granted, user, web_client, path, data
):
    """The attacker's own valid CSRF token (from their browser) fails in the victim's."""
    path, data = _target(auth_app, user, path, data, web_client)
    attacker = browser(auth_app, make_user(auth_app, "mallory", "mallory-password"))
    before = (consents(auth_app, user), session_ids(auth_app, user), password_hash(auth_app, user))
    r = granted.post(path, data={**data, "csrf_token": ensure_csrf(attacker)}, headers=JSON)
    assert_csrf_refused(r)
    after = (consents(auth_app, user), session_ids(auth_app, user), password_hash(auth_app, user))
    assert after == before


def test_account_forms_take_only_form_bodies(auth_app, granted, web_client):
    """A JSON body (what a cross-origin fetch could send) is refused before anything else."""
    r = granted.post(
        "/account/apps/revoke",
        json={"client_id": web_client.client_id, "csrf_token": ensure_csrf(granted)},
        headers=JSON,
    )
    assert r.status_code == 400
    assert r.json["error"] == "invalid_request"
    assert r.json["error_description"].startswith(
        "This endpoint takes application/x-www-form-urlencoded, not application/json"
    )


# --- another user's things ----------------------------------------------------------------


def test_another_users_session_cannot_be_seen_or_signed_out(auth_app, user):
    """Alice names Bob's session id: a 404, and Bob stays signed in."""
    bob = make_user(auth_app, "bob", "bob-password")
    bobs = browser(auth_app, bob)
    [bob_sid] = session_ids(auth_app, bob)
    alice = browser(auth_app, user)
    r = alice.get(f"/account/sessions/{bob_sid}/sign-out")
    assert r.status_code == 404
    r = alice.post(
        f"/account/sessions/{bob_sid}/sign-out",
        data={"csrf_token": ensure_csrf(alice)},
        headers=JSON,
    )
    assert r.status_code == 404
    assert r.json == {
        "error": "not_found",
        "error_description": "This session has ended, or is not yours.",
    }
    assert session_ids(auth_app, bob) == [bob_sid]
    assert signed_in(bobs)
    assert "bob" not in alice.get("/account").get_data(as_text=True)


def test_another_users_app_cannot_be_revoked(auth_app, user, web_client):
    """Alice names an app only Bob allowed: a 404; Bob's consent stays, nothing is published."""
    bob = make_user(auth_app, "bob", "bob-password")
    Flow(auth_app.test_client()).token(bob, web_client)
    alice = browser(auth_app, user)
    assert alice.get(f"/account/apps/revoke?client_id={web_client.client_id}").status_code == 404
    r = alice.post(
        "/account/apps/revoke",
        data={
            "client_id": web_client.client_id,
            "end_calls": "yes",
            "csrf_token": ensure_csrf(alice),
        },
    )
    assert r.status_code == 404
    assert consents(auth_app, bob) == [web_client.client_id]
    assert feed(alice) == []


def test_revoking_an_app_leaves_the_same_app_for_other_users(auth_app, granted, user, web_client):
    """Alice removes an app; Bob's consent and tokens for the same app are untouched."""
    bob = make_user(auth_app, "bob", "bob-password")
    bob_tokens = Flow(auth_app.test_client()).token(bob, web_client)
    r = granted.post(
        "/account/apps/revoke",
        data={"client_id": web_client.client_id, "csrf_token": ensure_csrf(granted)},
    )
    assert r.status_code == 303
    assert consents(auth_app, user) == []
    assert consents(auth_app, bob) == [web_client.client_id]
    r = granted.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": bob_tokens["refresh_token"]},
        headers=web_client.basic(),
    )
    assert r.status_code == 200


def test_revoking_an_app_while_its_code_is_redeemed_leaves_no_live_token(
    monkeypatch, auth_app, user, web_client
):
    """The user removes the app while the app redeems a code: nothing it gets survives.

    The redemption holds the code's row lock when it notes the consent's last use; the
    removal waits for that lock before it touches the consent, so neither waits on the
    other in the opposite order (a deadlock on PostgreSQL, one of them failing)."""
    import threading

    from auth_server import oauth2

    flow = Flow(auth_app.test_client())
    flow.token(user, web_client)  # consent given; then a new code, redeemed below
    code = flow.authorize(user, web_client)["code"]
    verifier = flow.verifier or ""
    csrf = ensure_csrf(flow.client)
    with auth_app.app_context():  # long unused: this token's issue writes "last used"
        from auth_server.extensions import db
        from auth_server.models import Consent

        db.session.execute(sa_update(Consent).values(last_used_at=None))
        db.session.commit()
    seen: dict[str, Any] = {}
    original = oauth2.touch_consent

    def revoke() -> None:
        seen["removal"] = flow.client.post(
            "/account/apps/revoke", data={"client_id": web_client.client_id, "csrf_token": csrf}
        )

    def touch_while_revoking(user_id: str, client_id: str) -> None:
        if "worker" not in seen:  # the first token only
            seen["worker"] = threading.Thread(target=revoke, daemon=True)
            seen["worker"].start()
            # It now waits for the code's row lock (or SQLite's write lock).
            seen["worker"].join(0.5)
        original(user_id, client_id)

    monkeypatch.setattr(oauth2, "touch_consent", touch_while_revoking)
    r = auth_app.test_client().post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": web_client.redirect_uris[0],
            "code_verifier": verifier,
        },
        headers=web_client.basic(),
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    seen["worker"].join(30)
    assert not seen["worker"].is_alive(), "the removal hangs"
    assert seen["removal"].status_code == 303, seen["removal"].get_data(as_text=True)
    assert consents(auth_app, user) == []
    introspect = auth_app.test_client().post(
        "/oauth/introspect", data={"token": r.json["access_token"]}, headers=web_client.basic()
    )
    assert introspect.json == {"active": False}
    refreshed = auth_app.test_client().post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": r.json["refresh_token"]},
        headers=web_client.basic(),
    )
    assert (refreshed.status_code, refreshed.json["error"]) == (400, "invalid_grant")


# --- signed out ----------------------------------------------------------------------------


@pytest.mark.parametrize("path, data", FORMS, ids=[f[0] for f in FORMS])
def test_signed_out_posts_change_nothing(auth_app, granted, user, web_client, path, data):
    """After the session ended (the CSRF token still in the cookie): to the login form."""
    path, data = _target(auth_app, user, path, data, web_client)
    token = ensure_csrf(granted)
    with auth_app.app_context():
        from auth_server import sessions

        sessions.sign_out_everywhere(user.id)
    r = granted.post(path, data={**data, "csrf_token": token})
    assert (r.status_code, r.headers["Location"]) == (303, "/auth/login?next=/account")
    assert consents(auth_app, user) == [web_client.client_id]
    assert sign_in(auth_app.test_client(), user).status_code == 200  # the password is unchanged


def test_a_stolen_session_cookie_is_signed_out_from_the_account_page(auth_app, user):
    """Signing out a session from the account page ends it for every copy of its cookie,
    a thief's included."""
    laptop = browser(auth_app, user)
    thief = auth_app.test_client()
    thief.set_cookie(COOKIE, laptop.get_cookie(COOKIE).value)
    assert signed_in(thief)
    phone = browser(auth_app, user)
    laptop_sid = session_ids(auth_app, user)[0]
    r = phone.post(
        f"/account/sessions/{laptop_sid}/sign-out", data={"csrf_token": ensure_csrf(phone)}
    )
    assert r.status_code == 303
    assert not signed_in(thief)
    assert not signed_in(laptop)


def test_a_password_change_signs_out_a_thiefs_copy(auth_app, user):
    """Changing the password from another browser ends a stolen copy of the old session."""
    laptop = browser(auth_app, user)
    thief = auth_app.test_client()
    thief.set_cookie(COOKIE, laptop.get_cookie(COOKIE).value)
    phone = browser(auth_app, user)
    r = phone.post(
        "/account/password",
        data={
            "current_password": user.password,
            "new_password": "n3w-password",
            "confirm_password": "n3w-password",
            "csrf_token": ensure_csrf(phone),
        },
    )
    assert r.status_code == 303
    assert not signed_in(thief)
    assert signed_in(phone)


# --- open redirects ------------------------------------------------------------------------

UNSAFE_NEXT = [
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "https://evil.example/account",
    "http:/evil.example",
    "javascript:alert(1)",
    "evil.example/account",
    "/\t/evil.example",
    "/\n/evil.example",
    "/ /evil.example",
    "/account\r\nSet-Cookie: x=1",
    "/account#frag",
    "/caf\u00e9",
    "/" + "a" * 500,
]


@pytest.mark.parametrize("target", UNSAFE_NEXT)
def test_open_redirect_through_login_next_is_refused(auth_app, user, target):
    """The login form's `next` leads only to a path on this server; else it is ignored."""
    client = auth_app.test_client()
    r = client.get("/auth/login", query_string={"next": target})
    assert r.status_code == 200
    assert 'name="next"' not in r.get_data(as_text=True)
    r = client.post(
        "/auth/login",
        data={
            "username": user.username,
            "password": user.password,
            "next": target,
            "csrf_token": ensure_csrf(client),
        },
    )
    assert r.status_code == 200, r.headers.get("Location")
    assert "Location" not in r.headers
    assert f"Signed in as {user.username}." in r.get_data(as_text=True)
    # Signed in already: still no redirect.
    r = client.get("/auth/login", query_string={"next": target})
    assert r.status_code == 200 and "Location" not in r.headers


@pytest.mark.parametrize("target", ["/account", "/account?tab=apps", "/a/b;c=d%2F", "/"])
def test_login_next_to_a_path_on_this_server_is_followed(auth_app, user, target):
    """The safe case next to the attack: a path here is where the browser goes (303)."""
    client = auth_app.test_client()
    r = client.post(
        "/auth/login",
        data={
            "username": user.username,
            "password": user.password,
            "next": target,
            "csrf_token": ensure_csrf(client),
        },
    )
    assert (r.status_code, r.headers["Location"]) == (303, target)


# --- password guessing -----------------------------------------------------------------------


def test_password_guessing_through_the_change_form_is_throttled(app_with):
    """A stolen session cannot be used to guess the current password without limit."""
    app = app_with(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://")
    victim = make_user(app, "victim", "victim-password")
    client = browser(app, victim)

    def attempt(current: str) -> Any:
        return client.post(
            "/account/password",
            data={
                "current_password": current,
                "new_password": "attacker-password",
                "confirm_password": "attacker-password",
                "csrf_token": ensure_csrf(client),
            },
            headers=JSON,
        )

    for _ in range(5):
        assert attempt("guess").status_code == 401
    r = attempt("guess")
    assert r.status_code == 429
    assert r.json["error"] == "too_many_requests"
    assert attempt(victim.password).status_code == 429  # even the right one, for now
    assert sign_in(app.test_client(), victim).status_code == 200  # unchanged


# --- framing and caching -------------------------------------------------------------------


def test_account_pages_cannot_be_framed_or_cached(auth_app, granted, user, web_client):
    """Every account page: no-store (personal data), no framing (clickjacking)."""
    sid = session_ids(auth_app, user)[0]
    for path in (
        "/account",
        f"/account/apps/revoke?client_id={web_client.client_id}",
        f"/account/sessions/{sid}/sign-out",
        "/account/sign-out-everywhere",
    ):
        r = granted.get(path)
        assert r.status_code == 200, path
        assert r.headers["Cache-Control"] == "no-store", path
        assert r.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], path
