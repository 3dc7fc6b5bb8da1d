"""Client registration: metadata checks, secrets shown once and stored hashed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from shared.errors import InvalidRequest, ObjectDoesNotExist

from . import revocations
from .extensions import db
from .models import Client, hash_client_secret
from .rules import (
    DEFAULT_GRANT_TYPES,
    DEFAULT_SCOPE,
    DEFAULT_SECRET_AUTH_METHOD,
    GRANT_TYPES,
    MACHINE_SCOPES,
    PERSON_SCOPES,
    PUBLIC_AUTH_METHOD,
    RESPONSE_TYPES,
    SCOPES,
    mixes_admin_with_browser,
    validate_redirect_uri,
)

# Printed (stderr) by the CLI whenever it registers such a client with the flag.
ADMIN_FOR_USERS_WARNING = (
    "Warning: this client may ask for the admin scope through a browser grant "
    "(authorization_code or implicit). Only users with the admin role are granted admin "
    "through it (other users get the rest of what it asks for), but every admin who signs in "
    "hands this app, and whoever steals its tokens, power over every user's calls. Prefer a "
    "separate client_credentials client for administration."
)
ADMIN_FOR_USERS_REFUSED = (
    "The admin scope with a browser grant (authorization_code or implicit) lets this app act "
    "on every user's calls whenever an admin signs in through it; register admin on a "
    "separate client_credentials client, or pass --allow-admin-for-users if that is intended."
)


@dataclass
class RegisteredClient:
    client: Client
    client_secret: str | None


def client_metadata(
    name: str,
    redirect_uris: Iterable[str],
    grant_types: Iterable[str] = DEFAULT_GRANT_TYPES,
    response_types: Iterable[str] | None = None,
    scope: str = DEFAULT_SCOPE,
    public: bool = False,
    production: bool = False,
    allow_admin_for_users: bool = False,
) -> dict[str, object]:
    """Checked client metadata (RFC 7591 names), for a new client or an updated one.

    ``response_types=None``: those the grants use (``code`` for ``authorization_code``,
    ``token`` for ``implicit``). The ``admin`` scope together with a browser grant is refused
    unless ``allow_admin_for_users``: users are then granted ``admin`` through this client
    only when their role allows it (``rules.ROLE_SCOPES``).
    """
    name = (name or "").strip()
    if not name:
        raise InvalidRequest("A client needs a name.")
    grants = list(dict.fromkeys(grant_types or DEFAULT_GRANT_TYPES))
    for g in grants:
        if g not in GRANT_TYPES:
            raise InvalidRequest(f"Unknown grant type {g!r}; use one of {', '.join(GRANT_TYPES)}.")
    if response_types is None:
        responses = []
        if "authorization_code" in grants:
            responses.append("code")
        if "implicit" in grants:
            responses.append("token")
    else:
        responses = list(dict.fromkeys(response_types))
    for r in responses:
        if r not in RESPONSE_TYPES:
            raise InvalidRequest(f"Unknown response type {r!r}; use {' or '.join(RESPONSE_TYPES)}.")
    if "implicit" in grants and "token" not in responses:
        raise InvalidRequest("The implicit grant needs --response-type token.")
    if "token" in responses and "implicit" not in grants:
        grants.append("implicit")
    if "code" in responses and "authorization_code" not in grants:
        raise InvalidRequest("--response-type code needs the authorization_code grant.")
    if public and "client_credentials" in grants:
        raise InvalidRequest("A public client cannot use client_credentials.")
    scopes = list(dict.fromkeys(scope.split()))
    for s in scopes:
        if s not in SCOPES:
            raise InvalidRequest(f"Unknown scope {s!r}; use one of {', '.join(SCOPES)}.")
    if mixes_admin_with_browser(grants, scopes) and not allow_admin_for_users:
        raise InvalidRequest(ADMIN_FOR_USERS_REFUSED)
    machine = [s for s in scopes if s in MACHINE_SCOPES]
    if machine and grants != ["client_credentials"]:
        raise InvalidRequest(
            f"The {machine[0]!r} scope is for a phone system's own client: register it with "
            "--grant-type client_credentials only."
        )
    if grants == ["client_credentials"] and all(s in PERSON_SCOPES for s in scopes):
        # Such a client could never get a token: these scopes act for a person.
        raise InvalidRequest(
            f"A client_credentials client acts for no person, so it cannot get "
            f"{' or '.join(PERSON_SCOPES)}; register it with --scope admin (or introspect)."
        )
    uris = [validate_redirect_uri(u, production) for u in redirect_uris]
    if responses and not uris:
        raise InvalidRequest("A client that uses the authorization endpoint needs --redirect-uri.")
    return {
        "client_name": name,
        "redirect_uris": uris,
        "grant_types": grants,
        "response_types": responses,
        "scope": " ".join(scopes),
        "token_endpoint_auth_method": PUBLIC_AUTH_METHOD if public else DEFAULT_SECRET_AUTH_METHOD,
    }


def new_client_id() -> str:
    """A random URL-safe id that never starts with '-' (the CLI would read it as an option)."""
    while True:
        client_id = secrets.token_urlsafe(18)
        if not client_id.startswith("-"):
            return client_id


def create_client(
    name: str,
    redirect_uris: Iterable[str],
    grant_types: Iterable[str] = DEFAULT_GRANT_TYPES,
    response_types: Iterable[str] | None = None,
    scope: str = DEFAULT_SCOPE,
    public: bool = False,
    production: bool = False,
    client_id: str | None = None,
    client_secret: str | None = None,
    allow_admin_for_users: bool = False,
) -> RegisteredClient:
    """Register a client. The plain secret is returned once and only its hash is kept."""
    metadata = client_metadata(
        name=name,
        redirect_uris=redirect_uris,
        grant_types=grant_types,
        response_types=response_types,
        scope=scope,
        public=public,
        production=production,
        allow_admin_for_users=allow_admin_for_users,
    )
    client_id = client_id or new_client_id()
    if db.session.scalar(select(Client).where(Client.client_id == client_id)) is not None:
        raise InvalidRequest(f"The client_id {client_id!r} exists already.")
    secret = None if public else (client_secret or secrets.token_urlsafe(32))
    client = Client(
        client_id=client_id,
        client_secret=hash_client_secret(secret) if secret else None,
        client_id_issued_at=int(time.time()),
    )
    client.set_client_metadata(metadata)
    db.session.add(client)
    db.session.commit()
    return RegisteredClient(client=client, client_secret=secret)


def get_client(client_id: str) -> Client:
    client = db.session.scalar(select(Client).where(Client.client_id == client_id))
    if client is None:
        raise ObjectDoesNotExist(f"No client {client_id!r}.")
    return client


def update_client(
    client_id: str,
    name: str | None = None,
    redirect_uris: Iterable[str] | None = None,
    grant_types: Iterable[str] | None = None,
    response_types: Iterable[str] | None = None,
    scope: str | None = None,
    production: bool = False,
    allow_admin_for_users: bool = False,
) -> Client:
    """Change the given metadata (``None``: keep), checked exactly as at creation.

    New grant types without response types get the response types those grants use, as at
    creation. The client stays public or confidential, and keeps its id and secret. A client
    already registered with ``admin`` and a browser grant keeps them without the flag; an
    update that brings the two together needs ``allow_admin_for_users``, as at creation.
    """
    client = get_client(client_id)
    current = client.client_metadata
    if grant_types is not None and response_types is None:
        responses: Iterable[str] | None = None
    elif response_types is not None:
        responses = response_types
    else:
        responses = current.get("response_types", [])
    metadata = client_metadata(
        name=current.get("client_name", "") if name is None else name,
        redirect_uris=current.get("redirect_uris", []) if redirect_uris is None else redirect_uris,
        grant_types=current.get("grant_types", []) if grant_types is None else grant_types,
        response_types=responses,
        scope=current.get("scope", "") if scope is None else scope,
        public=client.is_public,
        production=production,
        allow_admin_for_users=allow_admin_for_users or admin_for_users(client),
    )
    metadata["token_endpoint_auth_method"] = client.token_endpoint_auth_method
    client.set_client_metadata({**current, **metadata})
    db.session.commit()
    return client


def admin_for_users(client: Client) -> bool:
    """The client may ask for ``admin`` through a browser grant."""
    meta = client.client_metadata
    return mixes_admin_with_browser(meta.get("grant_types", []), meta.get("scope", "").split())


def list_clients() -> list[Client]:
    return list(db.session.scalars(select(Client).order_by(Client.id)))


def delete_client(client_id: str) -> None:
    """Delete the client with its tokens, codes and consents; the call API stops accepting
    its access tokens (revocation feed)."""
    db.session.delete(get_client(client_id))
    revocations.record_client(client_id)
    db.session.commit()


def rotate_secret(client_id: str) -> str:
    client = get_client(client_id)
    if client.is_public:
        raise InvalidRequest("A public client has no secret.")
    secret = secrets.token_urlsafe(32)
    client.client_secret = hash_client_secret(secret)
    db.session.commit()
    return secret


def describe(client: Client) -> dict[str, object]:
    meta = client.client_metadata
    return {
        "client_id": client.client_id,
        "client_name": meta.get("client_name"),
        "public": client.is_public,
        "redirect_uris": meta.get("redirect_uris", []),
        "grant_types": meta.get("grant_types", []),
        "response_types": meta.get("response_types", []),
        "scope": meta.get("scope", ""),
    }
