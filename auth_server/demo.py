"""Development demo data: a user, an operator (role admin), a web app client and an admin
client with known secrets; the simulator dialer's client and the call API pages' client
(each with a new secret at every start, never stored in plain).

Only for ``make run`` on a development machine; refused with ``APP_ENV=production``.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from shared.config import ConfigError

from .accounts import create_user
from .clients import create_client, get_client, rotate_secret, update_client
from .extensions import db
from .models import Client, User

DEMO_USER = ("demo", "demo-password")
DEMO_OPERATOR = ("admin", "admin-password")  # role admin: the consoles
DEMO_CLIENT = ("demo-app", "demo-secret")
DEMO_SCOPE = "call openid profile email"
DEMO_RESPONSE_TYPES = ["code", "token", "id_token", "id_token token"]
DEMO_NAME, DEMO_EMAIL = "Demo User", "demo@example.com"
DEMO_ADMIN = ("demo-admin", "demo-admin-secret")
TEST_REDIRECT = "http://127.0.0.1:8888/test"
SIMULATOR_CLIENT = "simulator-dialer"
CALLS_WEB_CLIENT = "calls-web"
CALLS_WEB_REDIRECT = "http://127.0.0.1:8889/calls/callback"


def _refuse_in_production() -> None:
    if current_app.config["APP_ENV"] == "production":
        raise ConfigError("APP_ENV=production refuses to create demo accounts")


def ensure_demo() -> str:
    _refuse_in_production()
    created = []
    if db.session.scalar(select(User).where(User.username == DEMO_USER[0])) is None:
        create_user(*DEMO_USER, name=DEMO_NAME, email=DEMO_EMAIL, email_verified=True)
        created.append("user")
    if db.session.scalar(select(User).where(User.username == DEMO_OPERATOR[0])) is None:
        create_user(*DEMO_OPERATOR, role="admin")
        created.append("operator")
    if db.session.scalar(select(Client).where(Client.client_id == DEMO_CLIENT[0])) is None:
        create_client(
            name="Demo click-to-call app",
            redirect_uris=[TEST_REDIRECT],
            grant_types=["authorization_code", "implicit", "refresh_token"],
            response_types=DEMO_RESPONSE_TYPES,
            scope=DEMO_SCOPE,
            client_id=DEMO_CLIENT[0],
            client_secret=DEMO_CLIENT[1],
            post_logout_redirect_uris=[TEST_REDIRECT],
        )
        created.append("client")
    elif "openid" not in get_client(DEMO_CLIENT[0]).client_metadata.get("scope", "").split():
        # A demo database from before OpenID Connect: let its demo app try it too.
        update_client(
            DEMO_CLIENT[0],
            response_types=DEMO_RESPONSE_TYPES,
            scope=DEMO_SCOPE,
            post_logout_redirect_uris=[TEST_REDIRECT],
        )
    if db.session.scalar(select(Client).where(Client.client_id == DEMO_ADMIN[0])) is None:
        create_client(
            name="Demo admin console",
            redirect_uris=[],
            grant_types=["client_credentials"],
            response_types=[],
            scope="admin introspect",
            client_id=DEMO_ADMIN[0],
            client_secret=DEMO_ADMIN[1],
        )
        created.append("admin client")
    lines = [
        "Demo accounts (development only):",
        f"  user          {DEMO_USER[0]} / {DEMO_USER[1]}",
        f"  operator      {DEMO_OPERATOR[0]} / {DEMO_OPERATOR[1]} (role admin: the consoles)",
        f"  web client    client_id={DEMO_CLIENT[0]} client_secret={DEMO_CLIENT[1]}",
        f"                redirect_uri={TEST_REDIRECT} scope={DEMO_SCOPE} "
        "(authorization_code, implicit, refresh_token; OpenID Connect)",
        f"  admin client  client_id={DEMO_ADMIN[0]} client_secret={DEMO_ADMIN[1]} "
        "scope=admin introspect (client_credentials)",
    ]
    if created:
        lines.insert(0, "Created demo " + ", ".join(created) + ".")
    return "\n".join(lines)


def ensure_simulator_client() -> tuple[str, str]:
    """The simulator dialer's client (``client_credentials``, scope ``dialer``), created on
    first start, with a fresh random secret at every call: ``manage.py`` hands it to the
    simulator process it starts, and nothing writes it down (only its hash is stored).
    Returns ``(client_id, secret)``."""
    _refuse_in_production()
    if db.session.scalar(select(Client).where(Client.client_id == SIMULATOR_CLIENT)) is None:
        registered = create_client(
            name="Simulator dialer (development)",
            redirect_uris=[],
            grant_types=["client_credentials"],
            response_types=[],
            scope="dialer",
            client_id=SIMULATOR_CLIENT,
        )
        assert registered.client_secret is not None
        return SIMULATOR_CLIENT, registered.client_secret
    return SIMULATOR_CLIENT, rotate_secret(SIMULATOR_CLIENT)


def ensure_calls_web_client(redirect_uri: str = CALLS_WEB_REDIRECT) -> tuple[str, str]:
    """The call API pages' client (``calls-web``: authorization code + refresh token, scope
    ``call admin``, allowed to ask ``admin`` for users with that role), created on first
    start and pointed at ``redirect_uri``, with a fresh random secret at every call:
    ``manage.py`` hands it to the call API app it creates (``CALL_WEB_CLIENT_ID`` /
    ``CALL_WEB_CLIENT_SECRET``). Returns ``(client_id, secret)``."""
    _refuse_in_production()
    if db.session.scalar(select(Client).where(Client.client_id == CALLS_WEB_CLIENT)) is None:
        registered = create_client(
            name="ClickCall call pages (development)",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope="call admin",
            client_id=CALLS_WEB_CLIENT,
            allow_admin_for_users=True,
        )
        assert registered.client_secret is not None
        return CALLS_WEB_CLIENT, registered.client_secret
    if get_client(CALLS_WEB_CLIENT).client_metadata.get("redirect_uris") != [redirect_uri]:
        update_client(CALLS_WEB_CLIENT, redirect_uris=[redirect_uri], allow_admin_for_users=True)
    return CALLS_WEB_CLIENT, rotate_secret(CALLS_WEB_CLIENT)
