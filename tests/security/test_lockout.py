"""Nobody can lock a real user out (security round two, §2).

Failed logins are throttled per username only for browsers that never signed in as that
user; a browser holding the user's device cookie (OWASP's device cookies, set at sign-in)
has its own allowance. An attacker who exhausts the username budget from many addresses
blocks new browsers (429 with ``Retry-After``) but not the owner's known one. Usernames are
normalised once (case, width, whitespace) for throttling and sign-in alike.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import auth_config, make_user

JSON = {"Accept": "application/json"}
DEVICE_COOKIE = "clickcall_device"


@pytest.fixture
def app_with(app_with) -> Callable[..., Flask]:
    """The suite's builder with throttling on (the suite turns it off)."""

    def build(**extra) -> Flask:
        return app_with(
            **{"RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": "memory://", **extra}
        )

    return build


@pytest.fixture
def limited_app(app_with) -> Flask:
    return app_with()


def addr(ip: str) -> dict[str, dict[str, str]]:
    return {"environ_base": {"REMOTE_ADDR": ip}}


def csrf_of(client: FlaskClient, **kw) -> str:
    with client.session_transaction() as sess:
        token = sess.get("csrf")
    if token is None:
        client.get("/auth/login", headers=JSON, **kw)
        with client.session_transaction() as sess:
            token = sess["csrf"]
    return str(token)


def post_login(client: FlaskClient, username: str, password: str, ip: str = "127.0.0.1"):
    return client.post(
        "/auth/login",
        headers=JSON,
        data={"username": username, "password": password, "csrf_token": csrf_of(client)},
        **addr(ip),
    )


def assert_signed_in(r, username: str) -> None:
    assert r.status_code == 200, (r.status_code, r.get_data(as_text=True))
    assert r.json == {"status": "signed_in", "username": username}


def assert_too_many(r) -> None:
    assert r.status_code == 429, (r.status_code, r.get_data(as_text=True))
    assert int(r.headers["Retry-After"]) > 0
    assert r.json["error"] == "too_many_requests"


def known_browser(app: Flask, username: str, password: str, ip: str) -> FlaskClient:
    """The owner's browser: it signed in once (and out again), so it holds a device cookie."""
    browser = app.test_client()
    assert_signed_in(post_login(browser, username, password, ip), username)
    r = browser.post("/auth/logout", headers=JSON, data={"csrf_token": csrf_of(browser)})
    assert r.status_code == 200
    return browser


def test_lockout_attacker_from_many_addresses_cannot_lock_out_the_owners_browser(limited_app):
    owner = make_user(limited_app, "owner", "owner-password")
    browser = known_browser(limited_app, "owner", "owner-password", "198.51.100.7")
    # The attacker guesses from five addresses, a fresh browser each time: the per-address
    # limit never trips, the username's budget (5 a minute) is spent.
    for i in range(5):
        r = post_login(limited_app.test_client(), "owner", f"guess-{i}", f"203.0.113.{i + 1}")
        assert r.status_code == 401, r.json
    assert_too_many(post_login(limited_app.test_client(), "owner", "guess-6", "203.0.113.9"))
    # The owner's own browser, right password, from home: signed in.
    assert_signed_in(post_login(browser, "owner", owner.password, "198.51.100.7"), "owner")
    # ... and from another address too (the device, not the address, is what is known).
    assert_signed_in(post_login(browser, "owner", owner.password, "198.51.100.99"), "owner")
    # A browser that never signed in as the owner meets the spent budget: 429, Retry-After,
    # even with the right password, and nobody is signed in.
    new_browser = limited_app.test_client()
    assert_too_many(post_login(new_browser, "OWNER ", owner.password, "198.51.100.8"))
    assert new_browser.get_cookie(DEVICE_COOKIE, path="/auth") is None
    with new_browser.session_transaction() as sess:
        assert "uid" not in sess and "sid" not in sess


def test_lockout_known_device_has_its_own_allowance(limited_app):
    """The owner's browser mistyping is throttled on its own allowance (10 a minute), which
    neither spends nor is spent by the username's budget."""
    owner = make_user(limited_app, "typist", "typist-password")
    browser = known_browser(limited_app, "typist", owner.password, "198.51.100.7")
    for i in range(10):
        r = post_login(browser, "typist", f"typo-{i}", "198.51.100.7")
        assert r.status_code == 401, (i, r.json)
    assert_too_many(post_login(browser, "typist", owner.password, "198.51.100.7"))
    # Unknown browsers still have the whole username budget: 4 failures, then a sign-in.
    for i in range(4):
        r = post_login(limited_app.test_client(), "typist", f"x-{i}", f"203.0.113.{i + 1}")
        assert r.status_code == 401, r.json
    other = limited_app.test_client()
    assert_signed_in(post_login(other, "typist", owner.password, "198.51.100.50"), "typist")


def test_lockout_device_cookie_counts_only_for_its_own_user(limited_app):
    """Regression guard: a device cookie is no pass for other usernames. The attacker's
    browser signed in as the attacker; a tampered cookie is no cookie."""
    victim = make_user(limited_app, "victim", "victim-password")
    make_user(limited_app, "mallory", "mallory-password")
    attacker = known_browser(limited_app, "mallory", "mallory-password", "203.0.113.1")
    for i in range(5):
        assert post_login(attacker, "victim", f"guess-{i}", "203.0.113.1").status_code == 401
    assert_too_many(post_login(attacker, "victim", victim.password, "203.0.113.1"))
    cookie = attacker.get_cookie(DEVICE_COOKIE, path="/auth")
    assert cookie is not None
    forged = limited_app.test_client()
    forged.set_cookie(DEVICE_COOKIE, cookie.value[:-2] + "xx", path="/auth")
    assert_too_many(post_login(forged, "victim", victim.password, "203.0.113.2"))


def test_lockout_device_cookie_is_signed_httponly_lax_long_lived(app_with):
    app = app_with(SESSION_COOKIE_SECURE=True)
    make_user(app, "carol", "carol-password")
    browser = app.test_client()
    r = post_login(browser, "carol", "carol-password")
    assert r.status_code == 200
    headers = [h for h in r.headers.getlist("Set-Cookie") if h.startswith(DEVICE_COOKIE + "=")]
    assert len(headers) == 1, r.headers.getlist("Set-Cookie")
    attrs = {part.strip().lower() for part in headers[0].split(";")[1:]}
    assert {"httponly", "samesite=lax", "secure", "path=/auth"} <= attrs
    max_age = next(int(a.split("=")[1]) for a in attrs if a.startswith("max-age="))
    assert max_age >= 30 * 24 * 3600
    # Signed, and it names the user (normalised), never the password.
    from auth_server import devices

    value = headers[0].split(";")[0].split("=", 1)[1]
    with app.test_request_context():
        username, nonce = devices.read(value) or ("", "")
    assert username == "carol" and len(nonce) >= 16
    assert "carol-password" not in headers[0]


def test_lockout_failed_logins_set_no_device_cookie(limited_app):
    make_user(limited_app, "dave", "dave-password")
    browser = limited_app.test_client()
    assert post_login(browser, "dave", "wrong-password").status_code == 401
    assert browser.get_cookie(DEVICE_COOKIE, path="/auth") is None


def test_lockout_username_is_normalised_once_for_sign_in_and_throttling(limited_app):
    """Case, compatibility width and whitespace do not make another user, nor another
    budget: a user created as "Erin Example" signs in as "  ERIN   example " or in
    full-width letters, and its device cookie applies to every spelling."""
    erin = make_user(limited_app, "Erin Example", "erin-password")
    browser = limited_app.test_client()
    assert_signed_in(post_login(browser, "  ERIN   example ", erin.password), "erin example")
    assert erin.username == "erin example"  # stored normalised
    assert_signed_in(
        post_login(limited_app.test_client(), "\uff25rin Example", erin.password), "erin example"
    )
    for i, spelling in enumerate(
        ("erin example", "ERIN EXAMPLE", " Erin  Example", "eRiN eXaMpLe")
    ):
        r = post_login(limited_app.test_client(), spelling, "guess", f"203.0.113.{i + 1}")
        assert r.status_code == 401
    r = post_login(limited_app.test_client(), "Erin example", "guess", "203.0.113.8")
    assert r.status_code == 401
    assert_too_many(
        post_login(limited_app.test_client(), "erin example", erin.password, "10.1.1.1")
    )
    # The browser that signed in with one spelling is known under every spelling.
    assert_signed_in(post_login(browser, "ERIN EXAMPLE", erin.password), "erin example")
    # And the name is taken in every spelling.
    from auth_server.accounts import create_user
    from shared.errors import Conflict

    with limited_app.app_context(), pytest.raises(Conflict):
        create_user(" ERIN  EXAMPLE", "another-password")


def redis_url() -> str:
    import redis

    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    return url


def same_browser(replica: Flask, browser: FlaskClient) -> FlaskClient:
    """``browser`` going to ``replica`` (behind a load balancer): its device cookie along."""
    client = replica.test_client()
    cookie = browser.get_cookie(DEVICE_COOKIE, path="/auth")
    if cookie is not None:
        client.set_cookie(DEVICE_COOKIE, cookie.value, path="/auth")
    return client


def test_lockout_budgets_are_shared_by_replicas_through_redis(app_with):
    """Two replicas (two apps' worth of state) sharing Redis: the username budget an
    attacker spends on both still spares the owner's known browser on either, and that
    browser's own allowance is counted across both."""
    settings = {"RATELIMIT_STORAGE_URI": redis_url()}
    replica_a, replica_b = app_with(**settings), app_with(**settings)
    # Redis outlives the test: a fresh username and addresses give fresh budgets.
    tag = uuid.uuid4()
    name = f"owner-{tag.hex[:10]}"
    net = f"10.{tag.bytes[0]}.{tag.bytes[1]}"
    owner = make_user(replica_a, name, "owner-password")
    browser = known_browser(replica_a, name, owner.password, f"{net}.200")
    for i in range(5):
        replica = (replica_a, replica_b)[i % 2]
        r = post_login(replica.test_client(), name, "guess", f"{net}.{i + 1}")
        assert r.status_code == 401, r.json
    for replica in (replica_a, replica_b):
        assert_too_many(post_login(replica.test_client(), name, owner.password, f"{net}.100"))
    # The known browser holds a cookie replica A signed; replica B honours it (same key).
    for replica in (replica_b, replica_a):
        known = same_browser(replica, browser)
        assert_signed_in(post_login(known, name, owner.password, f"{net}.200"), name)
    # The device's own allowance (10) is one budget across the replicas too.
    for i in range(10):
        known = same_browser((replica_a, replica_b)[i % 2], browser)
        assert post_login(known, name, "typo", f"{net}.200").status_code == 401
    for replica in (replica_a, replica_b):
        known = same_browser(replica, browser)
        assert_too_many(post_login(known, name, owner.password, f"{net}.200"))


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_lockout_existing_usernames_are_normalised_by_the_migration(backend, tmp_path, keys_dir):
    """Users created before usernames were normalised keep signing in: the migration stores
    their normalised name when it is free; when two existing users collide ("BOB", "bob"),
    the other keeps its exact name, which signs in as typed."""
    import flask_migrate
    import sqlalchemy as sa
    from werkzeug.security import generate_password_hash

    from auth_server import MIGRATIONS, create_app
    from tests.conftest import _PG, Databases, create_pg_database, drop_pg_database

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/legacy.db"
    elif not _PG:
        pytest.skip("PostgreSQL is not reachable")
    else:
        url = create_pg_database(f"clickcall_legacy_usernames_{os.getpid()}")
    app = create_app(auth_config(Databases(backend, url, url), keys_dir))
    db = app.extensions["sqlalchemy"]
    try:
        with app.app_context():
            flask_migrate.upgrade(directory=MIGRATIONS, revision="3a10e5c0a1e1")
            pw = generate_password_hash("legacy-password", "pbkdf2:sha256:1")
            with db.engine.begin() as conn:
                for user_id, name in (
                    ("u1", "Alice"),
                    ("u2", "BOB"),
                    ("u3", "bob"),
                    ("u4", "Straße"),
                ):
                    conn.execute(
                        sa.text(
                            "INSERT INTO users (id, username, password_hash, created_at) "
                            "VALUES (:id, :name, :pw, CURRENT_TIMESTAMP)"
                        ),
                        {"id": user_id, "name": name, "pw": pw},
                    )
            flask_migrate.upgrade(directory=MIGRATIONS)
            with db.engine.connect() as conn:
                names = dict(conn.execute(sa.text("SELECT id, username FROM users")).all())
            db.session.remove()
        assert names == {"u1": "alice", "u2": "BOB", "u3": "bob", "u4": "strasse"}
        for typed, stored in (
            ("ALICE", "alice"),
            ("Alice", "alice"),
            ("BOB", "BOB"),
            ("bob", "bob"),
            ("STRASSE", "strasse"),
            ("straße", "strasse"),
        ):
            r = post_login(app.test_client(), typed, "legacy-password")
            assert_signed_in(r, stored)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if backend == "postgresql":
            drop_pg_database(f"clickcall_legacy_usernames_{os.getpid()}")


def test_lockout_attacker_behind_the_owners_address_cannot_lock_out_the_owners_browser(
    limited_app,
):
    """Office NAT: the attacker shares the owner's address and spends its budget (20 a
    minute) on many usernames; the owner's known browser is exempt from the address budget
    too, so it still signs in, while a new browser from that address gets 429."""
    owner = make_user(limited_app, "colleague", "colleague-password")
    shared = "192.0.2.10"
    browser = known_browser(limited_app, "colleague", "colleague-password", shared)
    for i in range(20):
        r = post_login(limited_app.test_client(), f"someone-{i}", "guess", shared)
        assert r.status_code == 401, r.json
    assert_too_many(post_login(limited_app.test_client(), "someone-else", "guess", shared))
    assert_signed_in(post_login(browser, "colleague", owner.password, shared), "colleague")
    assert_too_many(post_login(limited_app.test_client(), "colleague", owner.password, shared))
