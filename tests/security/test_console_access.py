"""Who may use the operator's console (``/console``): only a signed-in user with the
``admin`` role; everyone else is refused before anything happens.

Every console route (read from the app's URL map, so a new one cannot be forgotten) sends a
signed-out visitor to the login page (302, ``next`` bringing them back) and answers a
signed-in non-admin with the 403 page; nothing changes, and a non-admin's POST is audited as
refused. Every POST needs this session's CSRF token (400 otherwise), the destructive ones a
confirmation (400 otherwise), and an admin cannot disable, demote or reset the password of
their own account (409, audited as refused): there is always an admin left who did not lock
themselves out by a slip. The console pages are never cached or framed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.auth_server.helpers import JSON, ensure_csrf
from tests.auth_server.test_console import (
    audit_entries,
    entry,
    make_admin,
    post,
    signed_in,
    user_row,
)
from tests.conftest import make_client, make_user

CSRF_REFUSED = {
    "error": "invalid_request",
    "error_description": "The form is stale or was not sent by this site (CSRF check failed); "
    "reload it.",
}


class Scene:
    """An app with its own keys folder (a staged key besides the signing one), an admin, a
    user, a victim user and a confidential client: the targets every route is tried on."""

    def __init__(self, app: Flask, keys: Path) -> None:
        from shared.keys import KeyStore

        self.app = app
        self.keys = keys
        self.staged = KeyStore(keys).add("EdDSA", activate=False).kid  # fast to make
        self.admin = make_admin(app)
        self.user = make_user(app, "mallory", "mallory-password")
        self.victim = make_user(app, "victim", "victim-password")
        self.client = make_client(app, "Victim app")

    def paths(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every console route, the placeholders filled in."""
        values = {
            "user_id": self.victim.id,
            "client_id": self.client.client_id,
            "kid": self.staged,
        }
        routes = []
        for rule in self.app.url_map.iter_rules():
            if not rule.endpoint.startswith("console."):
                continue
            path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], rule.rule)
            for method in sorted((rule.methods or set()) & {"GET", "POST"}):
                routes.append((method, path))
        return sorted(routes)

    def state(self) -> dict[str, Any]:
        """What a refused request must leave as it was."""
        from auth_server.extensions import db
        from auth_server.models import Client, User

        with self.app.app_context():
            users = {
                u.username: (u.role, u.is_disabled, u.name, u.email, u.email_verified)
                for u in db.session.scalars(select(User))
            }
            clients = {
                c.client_id: (c.client_secret, c.client_metadata)
                for c in db.session.scalars(select(Client))
            }
        keys = sorted(p.relative_to(self.keys).as_posix() for p in self.keys.rglob("*"))
        return {"users": users, "clients": clients, "keys": keys}


@pytest.fixture
def scene(app_with, keys_dir: Path, tmp_path: Path) -> Scene:
    folder = tmp_path / "keys"
    shutil.copytree(keys_dir, folder)
    return Scene(app_with(AUTH_KEYS_DIR=str(folder)), folder)


def every_form_field() -> dict[str, Any]:
    """A body that would carry out any console action (were the request allowed)."""
    return {
        "confirm": "yes",
        "username": "intruder",
        "password": "intruder-password",
        "role": "user",
        "generate": "yes",
        "name": "Intruder",
        "email": "intruder@evil.example",
        "email_verified": "yes",
        "redirect_uris": "http://127.0.0.1:9/x",
        "grant_types": "authorization_code",
        "scopes": "call",
    }


def test_console_routes_are_all_covered_here(scene):
    """The routes the tests below try (read from the URL map) are the console's whole
    surface: 25 method/path pairs."""
    assert len(scene.paths()) == 25


def test_every_console_route_sends_a_signed_out_visitor_to_login(scene):
    """Signed out: 302 to the login page with ``next`` (the page itself for a GET, the
    console for a POST); nothing changes, nothing is audited."""
    before = scene.state()
    browser = scene.app.test_client()
    for method, path in scene.paths():
        r = browser.open(path, method=method, data=every_form_field())
        back = path if method == "GET" else "/console"
        assert (r.status_code, r.headers.get("Location")) == (302, f"/auth/login?next={back}"), (
            method,
            path,
        )
    assert scene.state() == before
    assert audit_entries(scene.app) == []


def test_every_console_route_refuses_a_signed_in_non_admin(scene):
    """A user without the admin role: the 403 page on every route, with or without a valid
    CSRF token; nothing changes; each POST with a valid token is audited as refused."""
    before = scene.state()
    browser = signed_in(scene.app, scene.user)
    posts = []
    for method, path in scene.paths():
        data = {**every_form_field(), "csrf_token": ensure_csrf(browser)}
        r = browser.open(path, method=method, data=data)
        assert r.status_code == 403, (method, path)
        assert "Operators only" in r.get_data(as_text=True)
        assert r.headers["Cache-Control"] == "no-store"
        if method == "POST":
            posts.append(path)
            r = browser.post(path, data=every_form_field())  # no CSRF token: not audited
            assert r.status_code == 403, path
    assert scene.state() == before
    assert audit_entries(scene.app) == [
        {
            **entry(scene.user, "console.forbidden", path, {"role": "user"}, "refused"),
        }
        for path in posts
    ]


def test_every_console_post_needs_the_csrf_token(scene):
    """An admin's browser, a POST without the session's token (or with another one): 400,
    nothing changes, nothing is audited (a forged request is not the admin's action)."""
    before = scene.state()
    browser = signed_in(scene.app, scene.admin)
    for method, path in scene.paths():
        if method != "POST":
            continue
        for token in (None, "forged-token"):
            data = every_form_field()
            if token:
                data["csrf_token"] = token
            r = browser.post(path, data=data, headers=JSON)
            assert (r.status_code, r.json) == (400, CSRF_REFUSED), path
    assert scene.state() == before
    assert audit_entries(scene.app) == []


def test_destructive_actions_need_a_confirmation(scene):
    """Disable, rotate the secret, delete the client, retire a key: without ``confirm=yes``
    a 400 pointing at the confirmation page, and nothing happens."""
    before = scene.state()
    browser = signed_in(scene.app, scene.admin)
    for path in (
        f"/console/users/{scene.victim.id}/disable",
        f"/console/clients/{scene.client.client_id}/rotate",
        f"/console/clients/{scene.client.client_id}/delete",
        f"/console/keys/{scene.staged}/retire",
    ):
        for confirm in (None, "no"):
            data = {"confirm": confirm} if confirm else {}
            r = post(browser, path, **data)
            assert r.status_code == 400, path
            page = r.get_data(as_text=True)
            assert "Nothing was changed." in page
            assert f'href="{path}"' in page  # the GET of the same path is its confirmation
    assert scene.state() == before
    assert audit_entries(scene.app) == []


def test_an_admin_cannot_disable_demote_or_reset_themselves(scene):
    """An admin cannot disable, demote or reset the password of their own account: 409 with
    a clear sentence each, the account unchanged, each attempt audited as refused. (Another
    admin can.)"""
    admin = scene.admin
    browser = signed_in(scene.app, admin)
    base = f"/console/users/{admin.id}"
    attempts = [
        (
            "/disable",
            {"confirm": "yes"},
            "You cannot disable your own account; another admin must.",
        ),
        ("/role", {"role": "user"}, "You cannot remove your own admin role; another admin must."),
        (
            "/password",
            {"password": "new-password"},
            "Change your own password on your account page (it asks for the current one).",
        ),
    ]
    for suffix, data, message in attempts:
        r = post(browser, base + suffix, **data)
        assert r.status_code == 409, suffix
        assert message.replace("'", "&#39;") in r.get_data(as_text=True)
    assert user_row(scene.app, admin.username) == {
        "id": admin.id,
        "role": "admin",
        "disabled": False,
    }
    assert browser.get("/console").status_code == 200  # still signed in, still an admin
    target = f"user:{admin.username}"
    assert audit_entries(scene.app) == [
        entry(
            admin, "user.disable", target, {"user_id": admin.id, "error": attempts[0][2]}, "refused"
        ),
        entry(
            admin,
            "user.set_role",
            target,
            {"user_id": admin.id, "from": "admin", "to": "user", "error": attempts[1][2]},
            "refused",
        ),
        entry(
            admin,
            "user.reset_password",
            target,
            {"user_id": admin.id, "generated": False, "error": attempts[2][2]},
            "refused",
        ),
    ]


def test_a_demoted_admin_loses_the_console_at_once(scene):
    """Another admin takes the role away: the demoted admin's very next request is a 403."""
    other = make_user(scene.app, "second-admin", "second-password", role="admin")
    theirs = signed_in(scene.app, other)
    assert theirs.get("/console/users").status_code == 200
    mine = signed_in(scene.app, scene.admin)
    assert post(mine, f"/console/users/{other.id}/role", role="user").status_code == 303
    assert theirs.get("/console/users").status_code == 403


def test_the_login_page_brings_the_operator_back_to_the_console(scene):
    """A signed-out operator sent to the login page comes back to the console page asked
    for (``next``, a path on this server)."""
    browser = scene.app.test_client()
    r = browser.get("/console/audit?actor=root")
    assert r.headers["Location"] == "/auth/login?next=/console/audit?actor%3Droot"
    login = browser.get(r.headers["Location"])
    assert login.status_code == 200
    r = browser.post(
        r.headers["Location"],
        data={
            "username": scene.admin.username,
            "password": scene.admin.password,
            "csrf_token": ensure_csrf(browser),
        },
    )
    assert (r.status_code, r.headers["Location"]) == (303, "/console/audit?actor=root")


def test_console_pages_cannot_be_framed_or_cached(scene):
    """Console pages are never cached or framed: a page showing a fresh secret is the worst
    to leave in a cache or a frame."""
    browser = signed_in(scene.app, scene.admin)
    r = post(browser, f"/console/clients/{scene.client.client_id}/rotate", confirm="yes")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


def test_console_inputs_no_database_accepts_are_refused_not_5xx(scene):
    """NUL characters (PostgreSQL refuses them in text) and overlong ids in paths, filters
    and forms: a 404, an empty listing or a 400, never a 500; the refused creation is
    audited with the NUL dropped."""
    browser = signed_in(scene.app, scene.admin)
    for path in (
        "/console/users/%00",
        "/console/users/" + "x" * 300,
        "/console/clients/a%00b",
        "/console/clients/" + "x" * 300 + "/rotate",
        "/console/keys/%00/retire",
    ):
        assert browser.get(path).status_code == 404, path
    for path in ("/console/users?q=%00", "/console/audit?actor=%00&action=user.%00"):
        assert browser.get(path).status_code == 200, path
    r = post(browser, "/console/users", username="a\x00b", password="long-enough", role="user")
    assert r.status_code == 400
    assert audit_entries(scene.app) == [
        entry(
            scene.admin,
            "user.create",
            "user:ab",
            {"role": "user", "error": "The username contains control characters."},
            "refused",
        )
    ]
