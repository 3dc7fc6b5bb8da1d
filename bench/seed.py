"""Databases and data for `make bench`: a throwaway database pair, users, clients, codes,
tokens and calls.

Everything goes through the services' own code where that code is the subject
(``auth_server.schema.upgrade``, ``auth_server.accounts.create_user``,
``auth_server.clients.create_client``, ``call_api.calls.start_call`` / ``set_limit``, the
real token endpoint for user tokens). Two shortcuts keep seeding within seconds, and
neither changes what is measured:

- users after the first are inserted in bulk with the first user's password hash (the
  password hash is slow on purpose and no scenario logs in);
- authorization codes are inserted in bulk exactly as ``AuthorizationCodeGrant.
  save_authorization_code`` stores them (hash of the code, client, user, redirect URI,
  scope, S256 PKCE challenge): the scenario measures the exchange, not the consent pages.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import secrets
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests
import sqlalchemy as sa
from flask import Flask

from shared.db import normalise_url

REDIRECT_URI = "http://127.0.0.1:8888/test"
ISSUER = "http://127.0.0.1:8888"
AUDIENCE = "http://127.0.0.1:8889"
PASSWORD = "bench-password"
NUMBER = "+14155550123"


def db_url(admin_url: str, name: str) -> str:
    url = sa.engine.make_url(normalise_url(admin_url)).set(database=name)
    return url.render_as_string(hide_password=False)


def recreate_database(admin_url: str, name: str) -> str:
    engine = sa.create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return db_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    engine = sa.create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class BenchUser:
    id: str
    username: str
    token: str = ""


@dataclass
class Seed:
    web_client_id: str
    web_client_secret: str
    admin_client_id: str
    admin_client_secret: str
    readers: list[BenchUser] = field(default_factory=list)  # call_get / call_list / codes
    writers: list[BenchUser] = field(default_factory=list)  # call_create_end
    limited: BenchUser | None = None  # call_at_limit
    reader_calls: dict[str, str] = field(default_factory=dict)  # subject -> token_call

    @staticmethod
    def basic(client_id: str, secret: str) -> str:
        return base64.b64encode(f"{client_id}:{secret}".encode()).decode()

    @property
    def web_basic(self) -> str:
        return self.basic(self.web_client_id, self.web_client_secret)

    @property
    def admin_basic(self) -> str:
        return self.basic(self.admin_client_id, self.admin_client_secret)


def auth_app(auth_url: str, keys_dir: Path, issuer: str = ISSUER) -> Flask:
    from auth_server import create_app

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": auth_url,
            "AUTH_KEYS_DIR": str(keys_dir),
            "AUTH_ISSUER": issuer,
            "CALL_AUDIENCE": AUDIENCE,
            "SECRET_KEY": "bench-secret-key",
            "RATELIMIT_ENABLED": False,
        }
    )


def call_app(calls_url: str, public_key_file: Path) -> Flask:
    from call_api import create_app

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": calls_url,
            "CALL_PUBLIC_KEY_FILE": str(public_key_file),
            "AUTH_ISSUER": ISSUER,
            "CALL_AUDIENCE": AUDIENCE,
        }
    )


def _quietly(upgrade: Any, app: Flask) -> None:
    """Run a migration with Alembic's INFO lines captured (shown only if it fails)."""
    captured = io.StringIO()
    try:
        with app.app_context(), contextlib.redirect_stderr(captured):
            upgrade()
    except Exception:
        sys.stderr.write(captured.getvalue())
        raise


def upgrade_auth(app: Flask) -> None:
    from auth_server.schema import upgrade

    _quietly(upgrade, app)


def upgrade_calls(app: Flask) -> None:
    from call_api.schema import upgrade

    _quietly(upgrade, app)


def seed_auth(app: Flask, readers: int, writers: int) -> Seed:
    """Clients and users (the first through ``create_user``, the rest in bulk)."""
    from auth_server.accounts import create_user
    from auth_server.clients import create_client
    from auth_server.extensions import db
    from auth_server.models import User

    with app.app_context():
        web = create_client(
            name="bench web app",
            redirect_uris=[REDIRECT_URI],
            grant_types=("authorization_code", "refresh_token"),
            scope="call",
        )
        admin = create_client(
            name="bench admin",
            redirect_uris=[],
            grant_types=("client_credentials",),
            response_types=(),
            scope="admin",
        )
        first = create_user("bench-user-00000", PASSWORD)
        users = [BenchUser(first.id, first.username)]
        rows: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        for i in range(1, readers + writers + 1):
            user = BenchUser(str(uuid.uuid4()), f"bench-user-{i:05d}")
            users.append(user)
            rows.append(
                {
                    "id": user.id,
                    "username": user.username,
                    "password_hash": first.password_hash,
                    "created_at": now,
                }
            )
        db.session.execute(sa.insert(User), rows)
        db.session.commit()
        assert web.client_secret and admin.client_secret
        return Seed(
            web_client_id=web.client.client_id,
            web_client_secret=web.client_secret,
            admin_client_id=admin.client.client_id,
            admin_client_secret=admin.client_secret,
            readers=users[:readers],
            writers=users[readers : readers + writers],
            limited=users[readers + writers],
        )


def dialer_client(app: Flask) -> tuple[str, str]:
    """A client for the simulator dialer (``client_credentials``, scope ``dialer``):
    ``(client_id, client_secret)``."""
    from auth_server.clients import create_client

    with app.app_context():
        reg = create_client(
            name="bench simulator",
            redirect_uris=[],
            grant_types=("client_credentials",),
            response_types=(),
            scope="dialer",
        )
        assert reg.client_secret
        return reg.client.client_id, reg.client_secret


def mint_codes(
    app: Flask, client_id: str, user_ids: list[str], count: int
) -> list[tuple[str, str]]:
    """``count`` unused authorization codes (with PKCE) spread over ``user_ids``."""
    from auth_server.extensions import db
    from auth_server.models import AuthorizationCode, sha256_hex

    pairs: list[tuple[str, str]] = []
    rows: list[dict[str, Any]] = []
    now = int(time.time())
    for i in range(count):
        code = secrets.token_urlsafe(36)
        verifier, challenge = pkce_pair()
        pairs.append((code, verifier))
        rows.append(
            {
                "code_hash": sha256_hex(code),
                "client_id": client_id,
                "user_id": user_ids[i % len(user_ids)],
                "redirect_uri": REDIRECT_URI,
                "response_type": "code",
                "scope": "call",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "auth_time": now,
                "expires_at": now + 3600,
                "used_at": None,
            }
        )
    with app.app_context():
        for start in range(0, len(rows), 5000):
            db.session.execute(sa.insert(AuthorizationCode), rows[start : start + 5000])
        db.session.commit()
    return pairs


def exchange_codes(
    auth_base: str, seed: Seed, users: list[BenchUser], codes: list[tuple[str, str]]
) -> None:
    """Give every user an access token from the real token endpoint."""
    session = requests.Session()
    headers = {"Authorization": "Basic " + seed.web_basic}

    def one(args: tuple[BenchUser, tuple[str, str]]) -> None:
        user, (code, verifier) = args
        r = session.post(
            auth_base + "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
            headers=headers,
            timeout=30,
        )
        r.raise_for_status()
        user.token = r.json()["access_token"]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, zip(users, codes, strict=True)))


def mint_tokens(app: Flask, seed: Seed, users: list[BenchUser]) -> None:
    """Give every user an access token minted by the auth server's own token generator
    (``auth_server.tokens.generate_access_token``, the function behind POST /oauth/token,
    with the services' signing key): the same JWT the endpoint returns, in milliseconds
    instead of one HTTP exchange per user. The exchange itself is a scenario."""
    from auth_server.clients import get_client
    from auth_server.tokens import generate_access_token

    with app.test_request_context():
        client = get_client(seed.web_client_id)
        for user in users:
            account = SimpleNamespace(id=user.id, username=user.username)
            user.token = generate_access_token(client, "authorization_code", account, "call")


def end_ongoing(app: Flask, subjects: list[str]) -> int:
    """End every ongoing call of these subjects (``end_reason: admin``); returns how many."""
    from sqlalchemy import select

    from call_api import calls
    from call_api.extensions import db
    from call_api.models import Call

    policy = calls.Policy(default_limit=0, max_duration=14400)
    with app.app_context():
        tokens = db.session.scalars(
            select(Call.token_call).where(Call.subject.in_(subjects), Call.status == "ongoing")
        ).all()
        db.session.rollback()
        for token_call in tokens:
            calls.end_call(token_call, policy, reason="admin")
        return len(tokens)


def end_all_ongoing(app: Flask) -> int:
    """End every ongoing call (``end_reason: admin``), whoever's; returns how many."""
    from sqlalchemy import select

    from call_api.extensions import db
    from call_api.models import Call

    with app.app_context():
        subjects = list(
            db.session.scalars(select(Call.subject).where(Call.status == "ongoing").distinct())
        )
        db.session.rollback()
    return end_ongoing(app, subjects)


def seed_calls(app: Flask, seed: Seed, limit: int) -> None:
    """One ongoing call per reader; the limited user (and pgbench's) at its limit."""
    from call_api import calls

    policy = calls.Policy(default_limit=limit, max_duration=14400)
    with app.app_context():
        for user in seed.readers:
            started = calls.start_call(user.id, seed.web_client_id, NUMBER, policy)
            seed.reader_calls[user.id] = started.call.token_call
        assert seed.limited is not None
        for subject, client in ((seed.limited.id, seed.web_client_id), ("pgbench-at-limit", "pgb")):
            calls.set_limit(subject, limit)
            for _ in range(limit):
                calls.start_call(subject, client, NUMBER, policy)


def ongoing(app: Flask, subject: str) -> int:
    from call_api import calls

    with app.app_context():
        return calls.ongoing_count(subject)
