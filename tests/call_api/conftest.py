"""Fixtures for the call API tests (on top of ``tests/conftest.py``).

- ``mint(user, client, scope)``: a real access token from the auth server, each through its
  own browser session (so several users can hold tokens at once).
- ``forge(...)``: a token built here with PyJWT, by default signed with the auth server's
  real private key and carrying every claim the auth server puts in, so a test can change
  exactly one thing and see that one thing refused.
- ``dialer_token`` / ``dialer``: a forged client_credentials token with scope ``dialer``
  (client ``dialer-1``) and a ``helpers.Dialer`` (``sim-1``) using it on ``api``;
  ``dialer_token_for(client_id)`` forges one for another dialer client.
- ``make_call_app(**config)``: a second call API app on the same (already prepared, emptied)
  database with different settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.call_api.helpers import DROP, Dialer, good_claims
from tests.conftest import ClientInfo, Databases, Flow, UserInfo, call_config


@pytest.fixture
def mint(auth_app: Flask) -> Callable[..., str]:
    def _mint(user: UserInfo, client: ClientInfo, scope: str = "call") -> str:
        return str(Flow(auth_app.test_client()).token(user, client, scope)["access_token"])

    return _mint


@pytest.fixture(scope="session")
def signing_key(keys_dir: Path, public_key_file: Path) -> Any:
    """The auth server's private key that the call API trusts (via ``public_key_file``).

    Once per session, like ``public_key_file``: parsing a private key costs ~50 ms."""
    from shared.keys import KeyStore, load_public_key_pem, thumbprint

    trusted = thumbprint(load_public_key_pem(public_key_file))
    [key] = [k for k in KeyStore(keys_dir).keys() if k.kid == trusted]
    return key


@pytest.fixture
def forge(signing_key: Any) -> Callable[..., str]:
    def _forge(
        claims: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        key: Any = None,
        algorithm: str = "RS256",
        **overrides: Any,
    ) -> str:
        body = claims if claims is not None else good_claims(**overrides)
        head = {"typ": "at+jwt", "kid": signing_key.kid}
        if headers:
            for name, value in headers.items():
                if value is DROP:
                    # PyJWT fills in typ=JWT unless it is explicitly emptied.
                    if name == "typ":
                        head["typ"] = None
                    else:
                        head.pop(name, None)
                else:
                    head[name] = value
        return jwt.encode(
            body,
            signing_key.private_key if key is None else key,
            algorithm=algorithm,
            headers=head,
        )

    return _forge


@pytest.fixture
def dialer_token_for(forge: Callable[..., str]) -> Callable[[str], str]:
    """A token as the auth server issues to a dialer's own client (client_credentials:
    ``sub`` is the client, no ``username``), scope ``dialer``."""

    def _token(client_id: str) -> str:
        return forge(good_claims(scope="dialer", sub=client_id, client_id=client_id, username=None))

    return _token


@pytest.fixture
def dialer_token(dialer_token_for: Callable[[str], str]) -> str:
    return dialer_token_for("dialer-1")


@pytest.fixture
def dialer(api: FlaskClient, dialer_token: str) -> Dialer:
    return Dialer(api, dialer_token, "sim-1")


@pytest.fixture
def make_call_app(
    call_app: Flask, databases: Databases, public_key_file: Path
) -> Iterator[Callable[..., Flask]]:
    """Depends on ``call_app`` so the schema exists and the tables were emptied."""
    from call_api import create_app

    apps: list[Flask] = []

    def _make(**extra: Any) -> Flask:
        app = create_app(call_config(databases, public_key_file, **extra))
        apps.append(app)
        return app

    yield _make
    for app in apps:
        with app.app_context():
            app.extensions["sqlalchemy"].session.remove()
            app.extensions["sqlalchemy"].engine.dispose()
