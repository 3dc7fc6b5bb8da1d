"""The operator's console (``/console``): each action works through HTTP, as an admin signed
in with a browser, and leaves exactly the audit entry it should (stored and logged).

Who may reach the console (signed out, non-admins, CSRF, confirmations, the admin's own
account) is tests/security/test_console_access.py.
"""

from __future__ import annotations

import html
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.auth_server.helpers import ensure_csrf, introspect, jwks, sign_in, token_request
from tests.conftest import TEST_REDIRECT, ClientInfo, UserInfo, make_client, make_user

ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
LOCAL = "127.0.0.1"  # the test client's address


# --- helpers (tests/security/test_console_access.py uses them too) --------------------------


def make_admin(app: Flask, username: str = "root") -> UserInfo:
    return make_user(app, username, "root-password", role="admin")


def signed_in(app: Flask, user: UserInfo) -> FlaskClient:
    """A browser signed in as ``user``."""
    browser = app.test_client()
    r = sign_in(browser, user)
    assert r.status_code == 200, r.get_data(as_text=True)
    return browser


def post(browser: FlaskClient, path: str, **data: Any) -> Any:
    """A console form POST with the session's CSRF token."""
    return browser.post(path, data={"csrf_token": ensure_csrf(browser), **data})


def audit_entries(app: Flask) -> list[dict[str, Any]]:
    """Every stored entry, oldest first, as the console shows it; ``at`` checked and
    dropped, ``id`` dropped."""
    from auth_server.extensions import db
    from auth_server.models import AuditEvent
    from shared.audit import entry_dict

    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        entries = [entry_dict(row) for row in rows]
    for entry in entries:
        assert ISO_SECONDS.match(entry.pop("at")), entry
        entry.pop("id")
    return entries


def entry(
    admin: UserInfo,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    outcome: str = "ok",
) -> dict[str, Any]:
    return {
        "actor_id": admin.id,
        "actor_name": admin.username,
        "action": action,
        "target": target,
        "ip": LOCAL,
        "outcome": outcome,
        "details": details or {},
    }


def input_value(page: str, name: str) -> str:
    found = re.search(rf'id="{name}"[^>]*\bvalue="([^"]*)"', page)
    assert found, page
    return html.unescape(found.group(1))


def page_text(r: Any) -> str:
    return str(r.get_data(as_text=True))


def user_row(app: Flask, username: str) -> Any:
    from auth_server.accounts import find_user

    with app.app_context():
        user = find_user(username)
        return {"id": user.id, "role": user.role, "disabled": user.is_disabled}


# --- pages -------------------------------------------------------------------------------------


def test_console_pages_render_for_an_admin(auth_app, keys_dir):
    """Every page answers 200, uncached, with the console's navigation marking where it is;
    the overview and the keys page name the kid new tokens are signed with."""
    admin = make_admin(auth_app)
    browser = signed_in(auth_app, admin)
    from shared.keys import KeyStore

    kid = KeyStore(keys_dir).current().kid  # type: ignore[union-attr]
    pages = {
        "/console": "Overview",
        "/console/users": "Users",
        f"/console/users/{admin.id}": "Users",
        "/console/clients": "Clients",
        "/console/clients/new": "Clients",
        "/console/keys": "Signing keys",
        "/console/audit": "Audit trail",
    }
    for path, section in pages.items():
        r = browser.get(path)
        assert (r.status_code, r.headers["Cache-Control"]) == (200, "no-store"), path
        assert f'aria-current="page">{section}</a>' in page_text(r), path
    assert f"<code>{kid}</code>" in page_text(browser.get("/console"))
    assert f"New tokens are signed with <code>{kid}</code>" in page_text(
        browser.get("/console/keys")
    )


# --- users -----------------------------------------------------------------------------------


def test_create_user_then_a_taken_name_is_refused(auth_app):
    """The operator creates a user, who can sign in; a taken name is a 409 on the form,
    audited as refused. The password is in no entry."""
    admin = make_admin(auth_app)
    browser = signed_in(auth_app, admin)
    r = post(browser, "/console/users", username="  Bob ", password="bob-password", role="user")
    bob = user_row(auth_app, "bob")
    assert (r.status_code, r.headers["Location"]) == (303, f"/console/users/{bob['id']}")
    assert "User bob created." in page_text(browser.get(r.headers["Location"]))
    assert bob == {"id": bob["id"], "role": "user", "disabled": False}
    assert sign_in(auth_app.test_client(), UserInfo(bob["id"], "bob", "bob-password")).json == {
        "status": "signed_in",
        "username": "bob",
    }

    r = post(browser, "/console/users", username="BOB", password="other-password", role="admin")
    assert r.status_code == 409
    assert "The username &#39;bob&#39; is taken." in page_text(r)
    assert audit_entries(auth_app) == [
        entry(admin, "user.create", "user:bob", {"role": "user"}),
        entry(
            admin,
            "user.create",
            "user:bob",
            {"role": "admin", "error": "The username 'bob' is taken."},
            "refused",
        ),
    ]


def test_user_search_is_by_substring_and_paginated(auth_app):
    """``q`` matches part of the username (case-insensitively); 25 users a page."""
    from auth_server.accounts import hash_password
    from auth_server.extensions import db
    from auth_server.models import User

    with auth_app.app_context():
        hashed = hash_password("whatever-password")
        db.session.add_all(User(username=f"team-{n:02d}", password_hash=hashed) for n in range(30))
        db.session.add(User(username="other", password_hash=hashed))
        db.session.commit()
    browser = signed_in(auth_app, make_admin(auth_app))

    def names(r: Any) -> list[str]:
        assert r.status_code == 200
        return re.findall(r'<th scope="row"><a href="[^"]+">([^<]+)</a></th>', page_text(r))

    first = browser.get("/console/users?q=TEAM")
    assert names(first) == [f"team-{n:02d}" for n in range(25)]
    assert "30 users matching “TEAM”." in page_text(first)
    assert 'href="?q=TEAM&amp;page=2" rel="next"' in page_text(first)
    assert names(browser.get("/console/users?q=TEAM&page=2")) == [
        f"team-{n:02d}" for n in range(25, 30)
    ]
    assert names(browser.get("/console/users?q=m-1")) == [f"team-1{n}" for n in range(10)]
    assert names(browser.get("/console/users?q=%25")) == []  # a LIKE wildcard is plain text
    assert names(browser.get("/console/users")) == ["other", "root"] + [
        f"team-{n:02d}" for n in range(23)
    ]


def test_disabling_a_user_signs_them_out_and_refuses_their_token(auth_app, flow, web_client):
    """Disable (after the confirmation page): the user's browser is signed out at its next
    page and their access token introspects inactive; enable lets them sign in again."""
    admin = make_admin(auth_app)
    alice = make_user(auth_app, "alice", "alice-password")
    token = flow.token(alice, web_client)["access_token"]  # flow.client is alice's browser
    assert flow.client.get("/console").status_code == 403  # signed in, not an admin
    browser = signed_in(auth_app, admin)

    confirm = browser.get(f"/console/users/{alice.id}/disable")
    assert confirm.status_code == 200
    assert 'name="confirm" value="yes"' in page_text(confirm)
    r = post(browser, f"/console/users/{alice.id}/disable", confirm="yes")
    assert (r.status_code, r.headers["Location"]) == (303, f"/console/users/{alice.id}")
    assert user_row(auth_app, "alice")["disabled"] is True

    r = flow.client.get("/console")
    assert (r.status_code, r.headers["Location"]) == (302, "/auth/login?next=/console")
    assert introspect(flow.client, token, web_client).json == {"active": False}

    r = post(browser, f"/console/users/{alice.id}/enable")
    assert r.status_code == 303
    assert sign_in(auth_app.test_client(), alice).status_code == 200
    assert audit_entries(auth_app) == [
        entry(admin, "user.disable", "user:alice", {"user_id": alice.id}),
        entry(admin, "user.enable", "user:alice", {"user_id": alice.id}),
    ]


def test_set_role(auth_app):
    """Promote a user; an unknown role is a 400 on the page, audited as refused."""
    admin = make_admin(auth_app)
    bob = make_user(auth_app, "bob")
    browser = signed_in(auth_app, admin)
    r = post(browser, f"/console/users/{bob.id}/role", role="admin")
    assert r.status_code == 303
    assert user_row(auth_app, "bob")["role"] == "admin"
    r = post(browser, f"/console/users/{bob.id}/role", role="root")
    assert r.status_code == 400
    assert "Unknown role &#39;root&#39;; use user or admin." in page_text(r)
    assert user_row(auth_app, "bob")["role"] == "admin"
    assert audit_entries(auth_app) == [
        entry(
            admin, "user.set_role", "user:bob", {"user_id": bob.id, "from": "user", "to": "admin"}
        ),
        entry(
            admin,
            "user.set_role",
            "user:bob",
            {
                "user_id": bob.id,
                "from": "admin",
                "to": "root",
                "error": "Unknown role 'root'; use user or admin.",
            },
            "refused",
        ),
    ]


def test_reset_password_typed_or_generated(auth_app):
    """A typed password replaces the old one and ends the user's sessions; a generated one
    is shown once. Neither reaches the audit trail (stored or logged)."""
    admin = make_admin(auth_app)
    bob = make_user(auth_app, "bob", "bob-password")
    bobs_browser = signed_in(auth_app, bob)
    browser = signed_in(auth_app, admin)
    lines = capture_audit_log()

    r = post(browser, f"/console/users/{bob.id}/password", password="typed-password")
    assert (r.status_code, r.headers["Location"]) == (303, f"/console/users/{bob.id}")
    assert bobs_browser.get("/console").status_code == 302  # signed out
    assert sign_in(auth_app.test_client(), bob).status_code == 401
    assert sign_in(auth_app.test_client(), UserInfo(bob.id, "bob", "typed-password")).json == {
        "status": "signed_in",
        "username": "bob",
    }

    r = post(browser, f"/console/users/{bob.id}/password", generate="yes")
    assert (r.status_code, r.headers["Cache-Control"]) == (200, "no-store")
    generated = input_value(page_text(r), "secret")
    assert len(generated) == 16
    assert sign_in(auth_app.test_client(), UserInfo(bob.id, "bob", generated)).status_code == 200

    r = post(browser, f"/console/users/{bob.id}/password", password="short")
    assert r.status_code == 400
    assert "The password must be at least 8 characters long." in page_text(r)
    expected = [
        entry(admin, "user.reset_password", "user:bob", {"user_id": bob.id, "generated": False}),
        entry(admin, "user.reset_password", "user:bob", {"user_id": bob.id, "generated": True}),
        entry(
            admin,
            "user.reset_password",
            "user:bob",
            {
                "user_id": bob.id,
                "generated": False,
                "error": "The password must be at least 8 characters long.",
            },
            "refused",
        ),
    ]
    assert audit_entries(auth_app) == expected
    assert [strip_log(line) for line in lines] == expected
    for secret in ("typed-password", generated, "short"):
        assert secret not in json.dumps(lines)


# --- the audit log line ------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        from shared.logs import JsonFormatter

        self.lines.append(json.loads(JsonFormatter().format(record)))


@pytest.fixture(autouse=True)
def _no_stray_handlers():
    yield
    logger = logging.getLogger("clickcall.auth_server.audit")
    for handler in [h for h in logger.handlers if isinstance(h, _Lines)]:
        logger.removeHandler(handler)


def capture_audit_log() -> list[dict[str, Any]]:
    """The JSON lines ``clickcall.auth_server.audit`` logs from now on (until the test ends)."""
    handler = _Lines()
    logger = logging.getLogger("clickcall.auth_server.audit")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler.lines


def strip_log(line: dict[str, Any]) -> dict[str, Any]:
    """A logged line in the shape of ``audit_entries``' items."""
    assert (line["logger"], line["event"], line["service"]) == (
        "clickcall.auth_server.audit",
        "audit",
        "auth_server",
    )
    assert ISO_SECONDS.match(line["at"])
    keys = ("actor_id", "actor_name", "action", "target", "ip", "outcome", "details")
    return {key: line[key] for key in keys}


# --- clients ---------------------------------------------------------------------------------


def client_secret_basic(client_id: str, secret: str) -> ClientInfo:
    return ClientInfo(client_id, secret, [])


def cc_token(browser: FlaskClient, info: ClientInfo) -> Any:
    return token_request(browser, info, {"grant_type": "client_credentials", "scope": "admin"})


def test_register_a_client_secret_shown_once(auth_app):
    """Registration shows the secret once (it works at the token endpoint, and no page
    shows it again); invalid metadata is refused as the CLI refuses it, and audited."""
    admin = make_admin(auth_app)
    browser = signed_in(auth_app, admin)
    r = post(
        browser,
        "/console/clients",
        name="Billing",
        redirect_uris="",
        grant_types="client_credentials",
        scopes="admin",
        client_type="confidential",
    )
    assert (r.status_code, r.headers["Cache-Control"]) == (200, "no-store")
    page = page_text(r)
    client_id = re.search(r"<dt>Client id</dt><dd><code>([^<]+)</code>", page).group(1)  # type: ignore[union-attr]
    secret = input_value(page, "secret")
    assert cc_token(browser, client_secret_basic(client_id, secret)).status_code == 200
    assert secret not in page_text(browser.get(f"/console/clients/{client_id}"))
    assert secret not in page_text(browser.get("/console/clients"))

    r = post(
        browser,
        "/console/clients",
        name="Web",
        redirect_uris=f"{TEST_REDIRECT}\nhttps://example.com/cb#frag",
        grant_types=["authorization_code", "refresh_token"],
        scopes=["call", "admin"],
        client_type="public",
    )
    assert r.status_code == 400
    assert "The admin scope with a browser grant" in page_text(r)
    created, refused = audit_entries(auth_app)
    assert created == entry(
        admin,
        "client.create",
        f"client:{client_id}",
        {
            "client_name": "Billing",
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "scope": "admin",
            "public": False,
            "allow_admin_for_users": False,
        },
    )
    refused["target"] = re.sub(r"^client:.+$", "client:?", refused["target"])
    from auth_server.clients import ADMIN_FOR_USERS_REFUSED

    assert refused == entry(
        admin,
        "client.create",
        "client:?",
        {
            "client_name": "Web",
            "redirect_uris": [TEST_REDIRECT, "https://example.com/cb#frag"],
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "call admin",
            "public": True,
            "allow_admin_for_users": False,
            "error": ADMIN_FOR_USERS_REFUSED,
        },
        "refused",
    )


def test_edit_redirect_uris_and_scopes(auth_app, web_client):
    """Both replaced, checked as ``clients update`` checks them; the entry says from/to."""
    admin = make_admin(auth_app)
    browser = signed_in(auth_app, admin)
    path = f"/console/clients/{web_client.client_id}"
    new_uri = "http://127.0.0.1:7000/callback"
    r = post(browser, path, redirect_uris=f" {new_uri} \n\n{TEST_REDIRECT}\n", scopes=[])
    assert (r.status_code, r.headers["Location"]) == (303, path)
    page = page_text(browser.get(path))
    assert f"<code>{new_uri}</code><br><code>{TEST_REDIRECT}</code>" in page
    assert "<dt>Scopes</dt><dd>—</dd>" in page
    r = post(browser, path, redirect_uris="javascript:alert(1)", scopes="call")
    assert r.status_code == 400
    assert "Redirect URI &#39;javascript:alert(1)&#39; uses a forbidden scheme." in page_text(r)
    assert audit_entries(auth_app) == [
        entry(
            admin,
            "client.update",
            f"client:{web_client.client_id}",
            {
                "redirect_uris": {"from": [TEST_REDIRECT], "to": [new_uri, TEST_REDIRECT]},
                "scope": {"from": "call", "to": ""},
                "allow_admin_for_users": False,
            },
        ),
        entry(
            admin,
            "client.update",
            f"client:{web_client.client_id}",
            {
                "redirect_uris": {
                    "from": [new_uri, TEST_REDIRECT],
                    "to": ["javascript:alert(1)"],
                },
                "scope": {"from": "", "to": "call"},
                "allow_admin_for_users": False,
                "error": "Redirect URI 'javascript:alert(1)' uses a forbidden scheme.",
            },
            "refused",
        ),
    ]


def test_rotating_a_secret_stops_the_old_one_at_once(auth_app, admin_client):
    """After the confirmation, the new secret (shown once) works at /oauth/token and the old
    one is a 401 invalid_client."""
    admin = make_admin(auth_app)
    browser = signed_in(auth_app, admin)
    assert cc_token(browser, admin_client).status_code == 200
    path = f"/console/clients/{admin_client.client_id}/rotate"
    assert browser.get(path).status_code == 200
    r = post(browser, path, confirm="yes")
    assert (r.status_code, r.headers["Cache-Control"]) == (200, "no-store")
    new_secret = input_value(page_text(r), "secret")
    old = cc_token(browser, admin_client)
    assert (old.status_code, old.json["error"]) == (401, "invalid_client")
    new = cc_token(browser, client_secret_basic(admin_client.client_id, new_secret))
    assert new.status_code == 200
    assert audit_entries(auth_app) == [
        entry(admin, "client.rotate_secret", f"client:{admin_client.client_id}")
    ]
    assert new_secret not in json.dumps(audit_entries(auth_app))


def test_deleting_a_client_revokes_its_tokens(auth_app, admin_client):
    """Delete (after the confirmation): the client is gone, its token introspects inactive
    and the revocation feed names it."""
    admin = make_admin(auth_app)
    browser = signed_in(auth_app, admin)
    token = cc_token(browser, admin_client).json["access_token"]
    other = make_client(
        auth_app, "Introspector", [], ("client_credentials",), (), scope="introspect"
    )
    r = post(browser, f"/console/clients/{admin_client.client_id}/delete", confirm="yes")
    assert (r.status_code, r.headers["Location"]) == (303, "/console/clients")
    assert browser.get(f"/console/clients/{admin_client.client_id}").status_code == 404
    assert introspect(browser, token, other).json == {"active": False}
    feed = browser.get("/oauth/revocations").json["revocations"]
    assert [(e["kind"], e["value"]) for e in feed] == [("client", admin_client.client_id)]
    assert audit_entries(auth_app) == [
        entry(admin, "client.delete", f"client:{admin_client.client_id}", {"client_name": "Admin"})
    ]


# --- signing keys ------------------------------------------------------------------------------


@pytest.fixture
def own_keys(app_with, keys_dir: Path, tmp_path: Path) -> Flask:
    """An auth app with its own copy of the keys folder (the session's stays as it is),
    making Ed25519 keys (fast to generate)."""
    folder = tmp_path / "keys"
    shutil.copytree(keys_dir, folder)
    return app_with(AUTH_KEYS_DIR=str(folder), AUTH_SIGNING_ALG="EdDSA")


def key_states(browser: FlaskClient) -> dict[str, str]:
    page = page_text(browser.get("/console/keys"))
    rows = re.findall(
        r'<th scope="row"><code>([^<]+)</code></th>\s*<td>\w+</td>\s*<td>(\w+)</td>', page
    )
    return dict(rows)


def test_stage_activate_and_retire_keys(own_keys, keys_dir):
    """Stage publishes a key that does not sign; activate makes it sign; the old key, now
    previous, can be retired (out of the JWKS); the signing key cannot be."""
    from shared.keys import KeyStore

    old = KeyStore(keys_dir).current().kid  # type: ignore[union-attr]
    admin = make_admin(own_keys)
    client_app = make_client(own_keys, "Admin", [], ("client_credentials",), (), scope="admin")
    browser = signed_in(own_keys, admin)

    r = post(browser, "/console/keys/stage")
    assert (r.status_code, r.headers["Location"]) == (303, "/console/keys")
    states = key_states(browser)
    [new] = [kid for kid in states if kid != old]
    assert states == {new: "staged", old: "active"}
    assert {k["kid"] for k in jwks(browser)["keys"]} == {old, new}
    token = cc_token(browser, client_app).json["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == old

    assert post(browser, f"/console/keys/{new}/activate").status_code == 303
    assert key_states(browser) == {new: "active", old: "previous"}
    token = cc_token(browser, client_app).json["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == new

    r = post(browser, f"/console/keys/{new}/retire", confirm="yes")
    assert r.status_code == 409
    assert "This key signs new tokens: activate another key first." in page_text(r)
    assert browser.get(f"/console/keys/{old}/retire").status_code == 200
    r = post(browser, f"/console/keys/{old}/retire", confirm="yes")
    assert (r.status_code, r.headers["Location"]) == (303, "/console/keys")
    assert key_states(browser) == {new: "active", old: "retired"}
    assert [k["kid"] for k in jwks(browser)["keys"]] == [new]
    assert audit_entries(own_keys) == [
        entry(admin, "key.stage", f"key:{new}", {"alg": "EdDSA"}),
        entry(admin, "key.activate", f"key:{new}", {"previous": old}),
        entry(
            admin,
            "key.retire",
            f"key:{new}",
            {"error": "This key signs new tokens: activate another key first."},
            "refused",
        ),
        entry(admin, "key.retire", f"key:{old}"),
    ]


# --- the audit trail page ----------------------------------------------------------------------


def test_audit_page_lists_newest_first_with_filters(auth_app):
    """Newest first, 25 a page; filtered by actor (username) and by action or action prefix."""
    from auth_server import audit
    from shared.audit import AuditEntry

    admin = make_admin(auth_app)
    with auth_app.app_context():
        for n in range(27):
            audit.record(
                AuditEntry("id-1", "ops", f"user.n{n:02d}", f"user:u{n}", "10.0.0.1", {"n": n})
            )
        audit.record(AuditEntry("id-2", "other", "client.delete", "client:x", None, {}))
        audit.record_now(AuditEntry("id-2", "other", "key.stage", "key:k", None, {}, "refused"))
    browser = signed_in(auth_app, admin)

    def actions(query: str) -> list[str]:
        r = browser.get("/console/audit" + query)
        assert r.status_code == 200
        return re.findall(r"<td><code>([\w.]+)</code></td>", page_text(r))

    assert actions("") == ["key.stage", "client.delete"] + [
        f"user.n{n:02d}" for n in range(26, 3, -1)
    ]
    assert actions("?page=2") == ["user.n03", "user.n02", "user.n01", "user.n00"]
    assert actions("?actor=other") == ["key.stage", "client.delete"]
    assert actions("?action=client.delete") == ["client.delete"]
    assert actions("?action=user.&page=2") == ["user.n01", "user.n00"]
    assert actions("?actor=ops&action=key.") == []
    page = page_text(browser.get("/console/audit?actor=other"))
    assert "2 entries, newest first." in page
    assert '<span class="auth-console-outcome auth-console-outcome-refused">refused</span>' in page
