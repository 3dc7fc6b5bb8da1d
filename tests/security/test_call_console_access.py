"""Who may use the call API's operator console (``/calls/console``): only a page session
whose token carries ``admin`` (an auth-server user with the admin role); a signed-in user
without it gets the 403 page, a signed-out visitor the sign-in, a forged form the 403 page —
on every page and action, with nothing changed and nothing audited. Sign-in is the real
OAuth flow against the in-process auth server.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from tests.call_api.web_helpers import Pages, forward_to, pages_config, register_pages_client
from tests.conftest import Databases, UserInfo, call_config, make_user

SUBJECT = "11111111-2222-3333-4444-555555555555"
HOOK = "http://127.0.0.1:9/hook"

# Every console route: (method, URL rule). ``test_every_console_route_is_covered`` keeps this
# list equal to the app's, so a new page or action cannot escape the tests below.
ROUTES = [
    ("GET", "/calls/console"),
    ("GET", "/calls/console/users"),
    ("POST", "/calls/console/users/limit"),
    ("GET", "/calls/console/live"),
    ("GET", "/calls/console/calls/<token_call>/end"),
    ("POST", "/calls/console/calls/<token_call>/end"),
    ("GET", "/calls/console/history"),
    ("GET", "/calls/console/webhooks"),
    ("GET", "/calls/console/calls/<token_call>"),
    ("POST", "/calls/console/events/<event_id>/redeliver"),
    ("GET", "/calls/console/audit"),
]


@pytest.fixture
def pages_app(
    auth_app: Flask, call_app: Flask, databases: Databases, public_key_file: Path
) -> Iterator[Flask]:
    """The call API with its pages configured (on ``call_app``'s prepared database),
    talking to the in-process auth server."""
    from call_api import create_app

    config = pages_config(register_pages_client(auth_app))
    app = create_app(call_config(databases, public_key_file, **config))
    forward_to(app, auth_app)
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def live_call(pages_app: Flask) -> tuple[str, str]:
    """A live call of some user, with an event to redeliver: (token_call, event_id)."""
    from call_api import calls, webhooks

    with pages_app.app_context():
        policy = calls.Policy.from_config(pages_app.config)
        options = calls.CallOptions(status_callback=HOOK)
        token = calls.start_call(SUBJECT, "app-1", "+14155550123", policy, options=options)
        token_call = token.call.token_call
        [event] = webhooks.events_for_call(token_call)["events"]
    return token_call, event["event_id"]


def requests_for(live_call: tuple[str, str]) -> list[tuple[str, str, dict[str, str]]]:
    """Each route as a request that would succeed for an operator (method, path, form)."""
    token_call, event_id = live_call
    values = {"<token_call>": token_call, "<event_id>": event_id}
    forms = {
        "/calls/console/users/limit": {"subject": SUBJECT, "max_ongoing": "0", "action": "set"},
        "/calls/console/calls/<token_call>/end": {"confirm": "yes"},
    }
    out = []
    for method, rule in ROUTES:
        path = rule
        for name, value in values.items():
            path = path.replace(name, value)
        out.append((method, path, forms.get(rule, {}) if method == "POST" else {}))
    return out


def unchanged(app: Flask, live_call: tuple[str, str]) -> None:
    """The call is live, its event untouched, the user's limit the default, no audit entry."""
    from sqlalchemy import func, select

    from call_api import calls, webhooks
    from call_api.extensions import db
    from call_api.models import AuditEvent

    with app.app_context():
        policy = calls.Policy.from_config(app.config)
        assert calls.get_call(live_call[0], policy).state == "queued"
        [event] = webhooks.events_for_call(live_call[0])["events"]
        assert (event["delivery"], event["attempts"]) == ("pending", 0)
        assert calls.user_summary(SUBJECT, policy)["limit_source"] == "default"
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0
        db.session.remove()


def signed_in(app: Flask, auth_app: Flask, user: UserInfo) -> Pages:
    browser = Pages(app, auth_app)
    assert browser.sign_in(user).status_code in (302, 303)
    return browser


def test_every_console_route_is_covered(pages_app: Flask) -> None:
    found = sorted(
        (method, rule.rule)
        for rule in pages_app.url_map.iter_rules()
        if rule.rule.startswith("/calls/console")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    )
    assert found == sorted(ROUTES)


def test_signed_out_visitor_is_sent_to_sign_in_from_every_console_route(
    pages_app: Flask, live_call: tuple[str, str]
) -> None:
    """A page sends the visitor to the sign-in, coming back to it afterwards; an action
    (POST, which cannot be replayed after a sign-in) to the sign-in alone."""
    browser = pages_app.test_client()
    for method, path, form in requests_for(live_call):
        r = browser.open(path, method=method, data=form)
        location = urlsplit(r.headers.get("Location", ""))
        assert location.path == "/calls/login", (method, path, r.status_code)
        next_url = parse_qs(location.query)["next"][0]
        if method == "GET":
            assert r.status_code == 302 and next_url == path, (method, path)
        else:
            assert r.status_code == 303 and next_url == "/calls", (method, path)
    unchanged(pages_app, live_call)


def test_user_without_the_admin_role_gets_403_on_every_console_route(
    pages_app: Flask, auth_app: Flask, live_call: tuple[str, str]
) -> None:
    """A user (role ``user``) signs in through the same client, which asks for ``call
    admin``: the auth server grants ``call`` alone, and every console page and action
    answers the 403 page — even with the session's valid CSRF token — changing nothing."""
    member = signed_in(pages_app, auth_app, make_user(auth_app, "mallory", "mallory-pass"))
    token = member.csrf("/calls")
    for method, path, form in requests_for(live_call):
        data = {**form, "csrf_token": token} if method == "POST" else None
        r = member.calls.open(path, method=method, data=data)
        assert r.status_code == 403, (method, path, r.status_code)
        page = unescape(r.get_data(as_text=True))
        assert "Only operators may see this page" in page, (method, path)
        assert "You are signed in as mallory, who is not one." in page
        assert live_call[0] not in page and SUBJECT not in page
    unchanged(pages_app, live_call)


def test_console_actions_without_the_sessions_csrf_token_are_refused(
    pages_app: Flask, auth_app: Flask, live_call: tuple[str, str]
) -> None:
    """An operator's browser posting a form from elsewhere (no token, a made-up one, or
    another operator's) changes nothing: the 403 page, and no audit entry."""
    olga = signed_in(
        pages_app, auth_app, make_user(auth_app, "olga", "olga-password", role="admin")
    )
    other = signed_in(
        pages_app, auth_app, make_user(auth_app, "oscar", "oscar-password", role="admin")
    )
    others_token = other.csrf("/calls/console")
    posts = [(path, form) for method, path, form in requests_for(live_call) if method == "POST"]
    for path, form in posts:
        for token in (None, "forged", others_token):
            data = dict(form) if token is None else {**form, "csrf_token": token}
            r = olga.calls.post(path, data=data)
            assert r.status_code == 403, (path, token, r.status_code)
            assert "This form has expired" in r.get_data(as_text=True)
    unchanged(pages_app, live_call)


def test_operator_reaches_every_console_page(
    pages_app: Flask, auth_app: Flask, live_call: tuple[str, str]
) -> None:
    """The same requests succeed for an operator (so the refusals above are the guard's),
    and the console's pages are neither cached nor framed."""
    olga = signed_in(
        pages_app, auth_app, make_user(auth_app, "olga", "olga-password", role="admin")
    )
    for method, path, _form in requests_for(live_call):
        if method == "GET":
            r = olga.get(path)
            assert r.status_code == 200, (path, r.status_code)
            assert r.headers["Cache-Control"] == "no-store"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    for method, path, form in requests_for(live_call):
        if method == "POST":
            r = olga.post(path, {**form, "csrf_token": olga.csrf("/calls/console")})
            assert r.status_code == 303, (path, r.status_code)
