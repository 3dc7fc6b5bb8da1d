"""The user's account page (``/account``): apps with access (and removing one), sessions,
the password; and the login form's ``next`` that brings a signed-out user back to it.

The attacks on these pages (CSRF, another user's things, open redirects) are in
tests/security/test_account_pages.py; what the call API does with an ``end_calls`` entry
is in tests/call_api/test_end_calls.py.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.revocation import subject_hash
from tests.auth_server.helpers import (
    HTML,
    JSON,
    ensure_csrf,
    pkce_params,
    sign_in,
    token_request,
    verify_access_token,
)
from tests.conftest import ClientInfo, Flow, UserInfo, make_client, make_user

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
TO_LOGIN = "/auth/login?next=/account"


# --- helpers --------------------------------------------------------------------------------


def browser(
    app: Flask, user: UserInfo, agent: str = FIREFOX, addr: str = "127.0.0.1"
) -> FlaskClient:
    """A new browser signed in as ``user``."""
    client = app.test_client()
    client.environ_base.update(HTTP_USER_AGENT=agent, REMOTE_ADDR=addr)
    r = sign_in(client, user)
    assert r.status_code == 200, r.get_data(as_text=True)
    return client


def text(r: Any) -> str:
    """The page's visible text: inline tags dropped, the others made spaces, whitespace
    collapsed."""
    body = re.sub(r"</?(?:a|code|em|span|strong|time)\b[^>]*>", "", r.get_data(as_text=True))
    body = re.sub(r"<[^>]+>", " ", body)
    return " ".join(unescape(body).split())


def page(client: FlaskClient) -> str:
    r = client.get("/account")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store"
    return text(r)


def post(client: FlaskClient, path: str, **data: str) -> Any:
    return client.post(path, data={"csrf_token": ensure_csrf(client), **data})


def feed(client: FlaskClient) -> list[dict[str, Any]]:
    r = client.get("/oauth/revocations?after=0")
    assert r.status_code == 200
    return list(r.json["revocations"])


def refresh(client: FlaskClient, app_client: ClientInfo, token: str) -> Any:
    return token_request(
        client, app_client, {"grant_type": "refresh_token", "refresh_token": token}
    )


def consent_row(app: Flask, user: UserInfo, app_client: ClientInfo) -> Any:
    from auth_server.extensions import db
    from auth_server.models import Consent

    with app.app_context():
        row = db.session.scalar(
            select(Consent).where(
                Consent.user_id == user.id, Consent.client_id == app_client.client_id
            )
        )
        db.session.remove()
        return row


def minute(value: datetime | None) -> str:
    """A stored time as the page shows it (SQLite gives back naive UTC datetimes)."""
    assert value is not None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def live_session_ids(app: Flask, user: UserInfo) -> list[int]:
    from auth_server import sessions

    with app.app_context():
        return [row["id"] for row in sessions.list_sessions(user.id)]


def signed_in(client: FlaskClient) -> bool:
    return client.get("/account").status_code == 200


@pytest.fixture
def other_app(auth_app: Flask) -> ClientInfo:
    return make_client(auth_app, "Other app")


# --- signing in to see the page ---------------------------------------------------------------


def test_signed_out_goes_to_login_and_comes_back(auth_app):
    user = make_user(auth_app, "carol", "carol-password")
    client = auth_app.test_client()
    r = client.get("/account")
    assert (r.status_code, r.headers["Location"]) == (302, TO_LOGIN)
    r = client.get(TO_LOGIN)
    assert r.status_code == 200
    assert '<input type="hidden" name="next" value="/account">' in r.get_data(as_text=True)
    r = client.post(
        "/auth/login",
        data={
            "username": user.username,
            "password": user.password,
            "next": "/account",
            "csrf_token": ensure_csrf(client),
        },
    )
    assert (r.status_code, r.headers["Location"]) == (303, "/account")
    assert "Signed in as carol." in page(client)
    # Signed in already: the login link goes straight on.
    r = client.get(TO_LOGIN)
    assert (r.status_code, r.headers["Location"]) == (302, "/account")


def test_a_failed_sign_in_keeps_next(auth_app, user):
    client = auth_app.test_client()
    r = client.post(
        "/auth/login",
        data={
            "username": user.username,
            "password": "wrong",
            "next": "/account",
            "csrf_token": ensure_csrf(client),
        },
    )
    assert r.status_code == 401
    assert '<input type="hidden" name="next" value="/account">' in r.get_data(as_text=True)


def test_next_is_ignored_in_an_authorization_request(auth_app, user, web_client):
    """The OAuth flow goes on to consent; ``next`` plays no part in it."""
    client = auth_app.test_client()
    params = {**pkce_params(web_client)[1], "next": "/account"}
    r = client.post(
        "/auth/login",
        data={
            **params,
            "username": user.username,
            "password": user.password,
            "csrf_token": ensure_csrf(client),
        },
    )
    assert r.status_code == 303
    assert r.headers["Location"].startswith("/auth/grant?")


@pytest.mark.parametrize(
    "path", ["/account/apps/revoke?client_id=x", "/account/sessions/1/sign-out"]
)
def test_every_page_needs_sign_in(client, path):
    r = client.get(path)
    assert (r.status_code, r.headers["Location"]) == (302, TO_LOGIN)


def test_a_signed_out_form_post_goes_to_login(client):
    """A form posted after the session ended (the CSRF token is still the browser's)."""
    r = post(client, "/account/password", current_password="x")
    assert (r.status_code, r.headers["Location"]) == (303, TO_LOGIN)


def test_the_page_is_not_cached_or_framed(auth_app, user):
    r = browser(auth_app, user).get("/account")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.mimetype == "text/html"


# --- apps with access ----------------------------------------------------------------------


def test_the_page_lists_the_apps_with_access(auth_app, client, flow, user, web_client, other_app):
    from auth_server.consent import remember_consent

    flow.token(user, web_client)
    with auth_app.app_context():
        remember_consent(user.id, other_app.client_id, "call")
    body = page(client)
    assert "Apps with access" in body
    used = minute(consent_row(auth_app, user, web_client).last_used_at)
    granted = minute(consent_row(auth_app, user, other_app).granted_at)
    # By name: "Other app" before "Web app".
    assert (
        "Other app Can call — place, end and read phone calls on your behalf "
        f"First allowed {granted} Last used never Revoke access for Other app"
    ) in body
    assert (
        "Web app Can call — place, end and read phone calls on your behalf First allowed " in body
    )
    assert f"Last used {used} Revoke access for Web app" in body
    assert body.index("Other app Can") < body.index("Web app Can")


def test_no_app_has_access(auth_app, user):
    assert "No app has access to your account." in page(browser(auth_app, user))


def test_another_users_apps_are_not_listed(auth_app, client, flow, user, web_client):
    flow.token(user, web_client)
    bob = make_user(auth_app, "bob", "bob-password")
    body = page(browser(auth_app, bob))
    assert "Web app" not in body
    assert "No app has access to your account." in body


def test_last_used_follows_token_issue(auth_app, client, flow, user, web_client):
    from auth_server.extensions import db
    from auth_server.models import Consent

    tokens = flow.token(user, web_client)
    first = consent_row(auth_app, user, web_client).last_used_at
    assert first is not None
    # Within the minute a refresh does not write it again.
    r = refresh(client, web_client, tokens["refresh_token"])
    assert r.status_code == 200
    assert consent_row(auth_app, user, web_client).last_used_at == first
    # Two minutes later it does.
    with auth_app.app_context():
        row = db.session.get(Consent, consent_row(auth_app, user, web_client).id)
        row.last_used_at = first - timedelta(minutes=2)
        db.session.commit()
    assert refresh(client, web_client, r.json["refresh_token"]).status_code == 200
    assert consent_row(auth_app, user, web_client).last_used_at >= first


def test_the_revoke_confirmation_page(auth_app, client, flow, user, web_client):
    flow.token(user, web_client)
    r = client.get(f"/account/apps/revoke?client_id={web_client.client_id}")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    html = r.get_data(as_text=True)
    assert '<h1 id="page-title">Revoke Web app\'s access?</h1>' in html
    assert (
        '<input type="checkbox" id="end_calls" name="end_calls" value="yes" '
        'aria-describedby="end_calls-hint">'
    ) in html
    assert '<label for="end_calls">Also hang up this app\'s live calls</label>' in html
    assert f'<input type="hidden" name="client_id" value="{web_client.client_id}">' in html
    assert f'<input type="hidden" name="csrf_token" value="{ensure_csrf(client)}">' in html
    assert consent_row(auth_app, user, web_client) is not None  # a GET changes nothing


def test_revoking_an_app(auth_app, client, flow, user, web_client, other_app):
    web = flow.token(user, web_client)
    other = flow.token(user, other_app)
    before = {e["id"] for e in feed(client)}
    r = post(client, "/account/apps/revoke", client_id=web_client.client_id)
    assert (r.status_code, r.headers["Location"]) == (303, "/account")
    body = page(client)
    assert "Web app no longer has access to your account." in body
    assert "Its live calls" not in body
    assert "Revoke access for Web app" not in body
    assert "Revoke access for Other app" in body
    # The message is shown once.
    assert "no longer has access" not in page(client)
    assert consent_row(auth_app, user, web_client) is None
    assert consent_row(auth_app, user, other_app) is not None
    # The revoked app's refresh token is refused; the other app's works.
    r = refresh(client, web_client, web["refresh_token"])
    assert (r.status_code, r.json["error"]) == (400, "invalid_grant")
    assert refresh(client, other_app, other["refresh_token"]).status_code == 200
    # Its grant is in the feed (the call API refuses its access tokens); no end_calls.
    new = [e for e in feed(client) if e["id"] not in before]
    grant = verify_access_token(client, web["access_token"])["grant_id"]
    assert [(e["kind"], e["value"]) for e in new] == [("grant", grant)]
    # The next authorization request asks for consent again.
    r = client.get("/oauth/auth?" + urlencode(pkce_params(web_client)[1]))
    assert r.status_code == 303
    assert r.headers["Location"].startswith("/auth/grant?")


def test_revoking_an_app_and_its_calls_publishes_end_calls(
    auth_app, client, flow, user, web_client
):
    flow.token(user, web_client)
    before = int(time.time())
    r = post(client, "/account/apps/revoke", client_id=web_client.client_id, end_calls="yes")
    assert (r.status_code, r.headers["Location"]) == (303, "/account")
    assert (
        "Web app no longer has access to your account. Its live calls are being hung up."
        in page(client)
    )
    [entry] = [e for e in feed(client) if e["kind"] == "end_calls"]
    assert set(entry) == {"id", "kind", "value", "client_id", "issued_before", "expires_at"}
    assert entry["value"] == subject_hash(user.id)
    assert entry["client_id"] == web_client.client_id
    assert before < entry["issued_before"] <= int(time.time()) + 1
    assert entry["expires_at"] >= before + 3600


@pytest.mark.parametrize("value", ["", "no", "on", "true"])
def test_end_calls_only_when_ticked(auth_app, client, flow, user, web_client, value):
    """The checkbox sends ``yes``; anything else is not a request to hang up."""
    flow.token(user, web_client)
    data = {"client_id": web_client.client_id}
    if value:
        data["end_calls"] = value
    assert post(client, "/account/apps/revoke", **data).status_code == 303
    assert [e for e in feed(client) if e["kind"] == "end_calls"] == []


def test_revoking_an_app_without_access_is_a_404(auth_app, client, flow, user, web_client):
    flow.token(user, web_client)
    for client_id in ("unknown", "", "x" * 65, "a\x00b"):
        r = client.get("/account/apps/revoke", query_string={"client_id": client_id})
        assert r.status_code == 404, client_id
        assert "This app has no access to your account." in text(r)
        r = post(client, "/account/apps/revoke", client_id=client_id, end_calls="yes")
        assert r.status_code == 404, client_id
    # Revoking twice (a double submit): the second finds nothing.
    assert post(client, "/account/apps/revoke", client_id=web_client.client_id).status_code == 303
    r = post(client, "/account/apps/revoke", client_id=web_client.client_id, end_calls="yes")
    assert r.status_code == 404
    assert [e for e in feed(client) if e["kind"] == "end_calls"] == []


# --- sessions -------------------------------------------------------------------------------


def test_the_page_lists_the_sessions(auth_app, user):
    firefox = browser(auth_app, user, FIREFOX, "10.0.0.1")
    browser(auth_app, user, CHROME, "10.0.0.2")
    body = page(firefox)
    assert "Where you are signed in" in body
    assert re.search(r"Firefox this session Address 10\.0\.0\.1 Signed in \S+ \S+ UTC", body)
    assert re.search(r"Chrome Address 10\.0\.0\.2 Signed in ", body)
    assert body.count("this session") == 2  # the badge, and the sign-out link's text
    assert "Sign out everywhere (every session, this one too)" in body


def test_signing_out_another_session(auth_app, user):
    laptop = browser(auth_app, user, FIREFOX)
    phone = browser(auth_app, user, CHROME)
    laptop_id, phone_id = sorted(live_session_ids(auth_app, user))
    r = phone.get(f"/account/sessions/{laptop_id}/sign-out")
    assert r.status_code == 200
    assert "Sign out this session? Browser Firefox Address" in text(r)
    assert "That browser will have to sign in again." in text(r)
    r = post(phone, f"/account/sessions/{laptop_id}/sign-out")
    assert (r.status_code, r.headers["Location"]) == (303, "/account")
    assert "That session is signed out." in page(phone)
    assert live_session_ids(auth_app, user) == [phone_id]
    assert not signed_in(laptop)
    # Again: it has ended.
    assert post(phone, f"/account/sessions/{laptop_id}/sign-out").status_code == 404


def test_signing_out_this_session(auth_app, user):
    laptop = browser(auth_app, user, FIREFOX)
    phone = browser(auth_app, user, CHROME)
    laptop_id, phone_id = sorted(live_session_ids(auth_app, user))
    r = phone.get(f"/account/sessions/{phone_id}/sign-out")
    assert "This is the browser you are using: you will be signed out here." in text(r)
    r = post(phone, f"/account/sessions/{phone_id}/sign-out")
    assert r.status_code == 200
    assert "Signed out You are signed out." in text(r)
    assert not signed_in(phone)
    assert signed_in(laptop)
    assert live_session_ids(auth_app, user) == [laptop_id]


def test_sign_out_everywhere(auth_app, user):
    laptop = browser(auth_app, user, FIREFOX)
    phone = browser(auth_app, user, CHROME)
    r = phone.get("/account/sign-out-everywhere")
    assert r.status_code == 200
    assert "Every session of your account ends (2 now), in every browser, this one too" in text(r)
    r = post(phone, "/account/sign-out-everywhere")
    assert r.status_code == 200
    assert "You are signed out in every browser (2 sessions ended)." in text(r)
    assert not signed_in(phone)
    assert not signed_in(laptop)
    assert live_session_ids(auth_app, user) == []


def test_sessions_of_another_user_are_not_listed(auth_app, user):
    browser(auth_app, user, CHROME, "10.1.1.1")
    bob = make_user(auth_app, "bob", "bob-password")
    body = page(browser(auth_app, bob, FIREFOX, "10.2.2.2"))
    assert "10.1.1.1" not in body and "Chrome" not in body
    assert "10.2.2.2" in body


# --- password -------------------------------------------------------------------------------


def change(client: FlaskClient, current: str, new: str, confirm: str | None = None) -> Any:
    return post(
        client,
        "/account/password",
        current_password=current,
        new_password=new,
        confirm_password=new if confirm is None else confirm,
    )


def test_changing_the_password(auth_app, user, web_client):
    flow = Flow(auth_app.test_client())
    tokens = flow.token(user, web_client)
    laptop = browser(auth_app, user, FIREFOX)
    phone = browser(auth_app, user, CHROME)
    r = change(phone, user.password, "a-new-password")
    assert (r.status_code, r.headers["Location"]) == (303, "/account")
    assert "Your password is changed (2 other sessions signed out)." in page(phone)
    assert not signed_in(laptop)
    assert not signed_in(flow.client)
    # The new password signs in; the old one does not.
    assert sign_in(auth_app.test_client(), user).status_code == 401
    new = UserInfo(user.id, user.username, "a-new-password")
    assert sign_in(auth_app.test_client(), new).status_code == 200
    # Apps keep their access (as with `auth-server users set-password`).
    assert consent_row(auth_app, user, web_client) is not None
    assert refresh(phone, web_client, tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    "current, new, confirm, status, field, message",
    [
        ("", "a-new-password", None, 400, "current_password", "Enter your current password."),
        ("wrong", "a-new-password", None, 401, "current_password", "The current password is not right."),
        ("x" * 1025, "a-new-password", None, 401, "current_password", "The current password is not right."),
        (None, "short", None, 400, "new_password", "The password must be at least 8 characters long."),
        (None, "x" * 1025, None, 400, "new_password", "The password is longer than 1024 characters."),
        (None, "a-new-password", "a-new-passwore", 400, "confirm_password", "The two new passwords are not the same."),
        (None, None, None, 400, "new_password", "The new password is the same as the current one."),
    ],
)  # fmt: skip
def test_a_refused_password_change(auth_app, user, current, new, confirm, status, field, message):
    laptop = browser(auth_app, user, FIREFOX)
    phone = browser(auth_app, user, CHROME)
    current = user.password if current is None else current
    new = user.password if new is None else new
    r = change(phone, current, new, confirm)
    assert r.status_code == status
    html = r.get_data(as_text=True)
    assert f'<p class="error" role="alert">The password was not changed: {message}</p>' in html
    assert f'<p class="account-field-error" id="{field}-error">{message}</p>' in html
    assert re.search(
        rf'<input id="{field}" [^>]*aria-describedby="[^"]*{field}-error"[^>]* aria-invalid="true"',
        html,
        re.S,
    )
    assert html.count('aria-invalid="true"') == 1
    assert r.headers["Cache-Control"] == "no-store"
    # Nothing changed: the old password works, every session is still signed in.
    assert sign_in(auth_app.test_client(), user).status_code == 200
    assert signed_in(laptop) and signed_in(phone)


def test_the_password_form_is_labelled(auth_app, user):
    html = browser(auth_app, user).get("/account").get_data(as_text=True)
    for field, label in (
        ("current_password", "Current password"),
        ("new_password", "New password"),
        ("confirm_password", "New password again"),
    ):
        assert f'<label for="{field}">{label}</label>' in html
        assert f'<input id="{field}" name="{field}" type="password"' in html
    assert 'autocomplete="current-password"' in html
    assert html.count('autocomplete="new-password"') == 2
    assert 'aria-describedby="new_password-hint"' in html


# --- the consent page links here ----------------------------------------------------------


def test_the_consent_page_links_to_the_account_page(auth_app, user, web_client):
    client = auth_app.test_client()
    params = pkce_params(web_client)[1]
    r = sign_in(client, user, **params)
    r = client.get(r.headers["Location"], headers=HTML)
    assert r.status_code == 200
    assert "You can remove this app's access at any time on your account page." in text(r)
    assert '<a href="/account">your account page</a>' in r.get_data(as_text=True)


def test_json_clients_get_json_errors(auth_app, user):
    r = browser(auth_app, user).get("/account/apps/revoke?client_id=nope", headers=JSON)
    assert r.status_code == 404
    assert r.json == {
        "error": "not_found",
        "error_description": "This app has no access to your account.",
    }
