"""``AUTH_PASSWORD_HASH_METHOD``: the Werkzeug method new password hashes are made with.

The default is scrypt; the test suite configures a cheap one (``TEST_PASSWORD_HASH_METHOD``)
so that creating a user or signing in does not cost 0.1 s. Production refuses weak methods,
every environment refuses unknown ones, and stored hashes verify whatever the setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from auth_server.config import (
    DEFAULT_PASSWORD_HASH_METHOD,
    finalise,
    load_config,
    password_hash_is_weak,
)
from shared.config import ConfigError
from tests.conftest import (
    TEST_PASSWORD_HASH_METHOD,
    Databases,
    auth_config,
    make_user,
)


def _stored_hash(app: Flask, user_id: str) -> str:
    from auth_server.extensions import db
    from auth_server.models import User

    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        return user.password_hash


def _authenticates(app: Flask, username: str, password: str) -> bool:
    from auth_server.accounts import authenticate
    from shared.errors import InvalidCredentials

    with app.app_context():
        try:
            return authenticate(username, password).username == username
        except InvalidCredentials:
            return False


def test_the_default_is_scrypt() -> None:
    assert DEFAULT_PASSWORD_HASH_METHOD == "scrypt"
    assert load_config({})["AUTH_PASSWORD_HASH_METHOD"] == "scrypt"
    cfg = load_config({"AUTH_PASSWORD_HASH_METHOD": "pbkdf2:sha256:700000"})
    assert cfg["AUTH_PASSWORD_HASH_METHOD"] == "pbkdf2:sha256:700000"


def test_the_suite_uses_the_cheap_method(auth_app: Flask) -> None:
    assert auth_app.config["AUTH_PASSWORD_HASH_METHOD"] == TEST_PASSWORD_HASH_METHOD
    user = make_user(auth_app, "cheap", "cheap-password")
    assert _stored_hash(auth_app, user.id).startswith(TEST_PASSWORD_HASH_METHOD + "$")


def test_new_hashes_follow_the_setting_and_old_ones_still_verify(
    auth_app: Flask, databases: Databases, keys_dir: Path
) -> None:
    """A user hashed with scrypt signs in after a switch to PBKDF2 and the other way round;
    unknown users are checked against a dummy hash of the configured method."""
    from auth_server import create_app
    from auth_server.accounts import _dummy_hash

    scrypt_app = create_app(auth_config(databases, keys_dir, AUTH_PASSWORD_HASH_METHOD="scrypt"))
    pbkdf2_app = create_app(
        auth_config(databases, keys_dir, AUTH_PASSWORD_HASH_METHOD="pbkdf2:sha256:1000")
    )
    try:
        old = make_user(scrypt_app, "old-user", "old-password")
        new = make_user(pbkdf2_app, "new-user", "new-password")
        assert _stored_hash(auth_app, old.id).startswith("scrypt:32768:8:1$")
        assert _stored_hash(auth_app, new.id).startswith("pbkdf2:sha256:1000$")
        for app in (scrypt_app, pbkdf2_app):
            assert _authenticates(app, "old-user", "old-password")
            assert _authenticates(app, "new-user", "new-password")
            assert not _authenticates(app, "old-user", "new-password")
            assert not _authenticates(app, "nobody", "old-password")
        with pbkdf2_app.app_context():
            assert _dummy_hash().startswith("pbkdf2:sha256:1000$")
        with scrypt_app.app_context():
            assert _dummy_hash().startswith("scrypt:32768:8:1$")
    finally:
        for app in (scrypt_app, pbkdf2_app):
            with app.app_context():
                app.extensions["sqlalchemy"].session.remove()
                app.extensions["sqlalchemy"].engine.dispose()


@pytest.mark.parametrize(
    ("method", "weak"),
    [
        ("scrypt", False),
        ("scrypt:32768:8:1", False),
        ("scrypt:131072:8:1", False),
        ("scrypt:16384:8:1", True),
        ("scrypt:32768:4:1", True),
        ("pbkdf2", False),
        ("pbkdf2:sha256", False),
        ("pbkdf2:sha256:600000", False),
        ("pbkdf2:sha512:210000", False),
        ("pbkdf2:sha256:599999", True),
        ("pbkdf2:sha256:1", True),
        ("pbkdf2:sha1:1000000", True),
        ("pbkdf2:md5:10000000", True),
    ],
)
def test_weak_methods(method: str, weak: bool) -> None:
    assert password_hash_is_weak(method) is weak


@pytest.mark.parametrize(
    "method",
    [
        "",
        "md5",
        "plain",
        "scrypt:32768",
        "scrypt:32768:8:1:1",
        "scrypt:30000:8:1",  # N must be a power of two
        "scrypt:x:8:1",
        "pbkdf2:no-such-hash:1000",
        "pbkdf2:sha256:0",
        "pbkdf2:sha256:many",
        "pbkdf2:sha256:1000:1",
    ],
)
def test_unknown_methods_are_refused_in_any_environment(method: str) -> None:
    with pytest.raises(ConfigError, match="AUTH_PASSWORD_HASH_METHOD="):
        password_hash_is_weak(method)
    cfg = load_config({})
    cfg["AUTH_PASSWORD_HASH_METHOD"] = method  # as a test mapping would set it
    with pytest.raises(ConfigError, match="AUTH_PASSWORD_HASH_METHOD="):
        finalise(cfg)


def _production_env(keys_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "APP_ENV": "production",
        "AUTH_SECRET_KEY": "x" * 48,
        "AUTH_DATABASE_URL": "postgresql://clickcall@127.0.0.1:1/unused",
        "AUTH_ISSUER": "https://auth.example.com",
        "AUTH_KEYS_DIR": str(keys_dir),
        "AUTH_GENERATE_KEYS": "false",
        **extra,
    }


@pytest.mark.parametrize("method", [TEST_PASSWORD_HASH_METHOD, "scrypt:1024:8:1", "pbkdf2:sha1"])
def test_production_refuses_a_weak_method(keys_dir: Path, method: str) -> None:
    cfg: dict[str, Any] = load_config(_production_env(keys_dir, AUTH_PASSWORD_HASH_METHOD=method))
    with pytest.raises(ConfigError) as refused:
        finalise(cfg)
    message = str(refused.value)
    assert message.startswith(f"APP_ENV=production refuses AUTH_PASSWORD_HASH_METHOD='{method}'")


@pytest.mark.parametrize("method", ["", "scrypt", "scrypt:65536:8:2", "pbkdf2:sha256:1000000"])
def test_production_accepts_the_default_and_strong_methods(keys_dir: Path, method: str) -> None:
    cfg = load_config(_production_env(keys_dir, AUTH_PASSWORD_HASH_METHOD=method))
    finalise(cfg)
    assert cfg["AUTH_PASSWORD_HASH_METHOD"] == (method or "scrypt")


def test_development_allows_a_weak_method() -> None:
    cfg = load_config({"AUTH_PASSWORD_HASH_METHOD": TEST_PASSWORD_HASH_METHOD})
    cfg["SECRET_KEY"] = "dev"  # no var/ file written
    finalise(cfg)
    assert cfg["AUTH_PASSWORD_HASH_METHOD"] == TEST_PASSWORD_HASH_METHOD
