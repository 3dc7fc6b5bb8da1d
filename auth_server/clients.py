"""Client registration: metadata checks, secrets shown once and stored hashed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select

from shared.errors import InvalidRequest, ObjectDoesNotExist

from .extensions import db
from .models import Client, hash_client_secret

GRANT_TYPES = ("authorization_code", "implicit", "refresh_token", "client_credentials")
RESPONSE_TYPES = ("code", "token")
SCOPES = ("call", "admin")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


@dataclass
class RegisteredClient:
    client: Client
    client_secret: str | None


def validate_redirect_uri(uri: str, production: bool) -> str:
    parts = urlsplit(uri)
    if not parts.scheme or not (parts.netloc or parts.scheme not in ("http", "https")):
        raise InvalidRequest(f"Redirect URI {uri!r} must be an absolute URI.")
    if parts.fragment or "#" in uri:
        raise InvalidRequest(f"Redirect URI {uri!r} must not contain a fragment.")
    if parts.username or parts.password or "@" in parts.netloc:
        raise InvalidRequest(f"Redirect URI {uri!r} must not contain userinfo.")
    if "*" in uri:
        raise InvalidRequest(f"Redirect URI {uri!r} must not contain wildcards.")
    if parts.scheme == "http" and production and parts.hostname not in LOOPBACK_HOSTS:
        raise InvalidRequest(
            f"Redirect URI {uri!r}: http:// is only allowed for loopback in production."
        )
    if parts.scheme in ("javascript", "data", "file", "vbscript"):
        raise InvalidRequest(f"Redirect URI {uri!r} uses a forbidden scheme.")
    return uri


def new_client_id() -> str:
    """A random URL-safe id that never starts with '-' (the CLI would read it as an option)."""
    while True:
        client_id = secrets.token_urlsafe(18)
        if not client_id.startswith("-"):
            return client_id


def create_client(
    name: str,
    redirect_uris: Iterable[str],
    grant_types: Iterable[str] = ("authorization_code",),
    response_types: Iterable[str] | None = None,
    scope: str = "call",
    public: bool = False,
    production: bool = False,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> RegisteredClient:
    """Register a client. The plain secret is returned once and only its hash is kept."""
    name = (name or "").strip()
    if not name:
        raise InvalidRequest("A client needs a name.")
    grants = list(dict.fromkeys(grant_types or ("authorization_code",)))
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
            raise InvalidRequest(f"Unknown response type {r!r}; use code or token.")
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
    uris = [validate_redirect_uri(u, production) for u in redirect_uris]
    if responses and not uris:
        raise InvalidRequest("A client that uses the authorization endpoint needs --redirect-uri.")
    client_id = client_id or new_client_id()
    if db.session.scalar(select(Client).where(Client.client_id == client_id)) is not None:
        raise InvalidRequest(f"The client_id {client_id!r} exists already.")
    secret = None if public else (client_secret or secrets.token_urlsafe(32))
    client = Client(
        client_id=client_id,
        client_secret=hash_client_secret(secret) if secret else None,
        client_id_issued_at=int(time.time()),
    )
    client.set_client_metadata(
        {
            "client_name": name,
            "redirect_uris": uris,
            "grant_types": grants,
            "response_types": responses,
            "scope": " ".join(scopes),
            "token_endpoint_auth_method": "none" if public else "client_secret_basic",
        }
    )
    db.session.add(client)
    db.session.commit()
    return RegisteredClient(client=client, client_secret=secret)


def get_client(client_id: str) -> Client:
    client = db.session.scalar(select(Client).where(Client.client_id == client_id))
    if client is None:
        raise ObjectDoesNotExist(f"No client {client_id!r}.")
    return client


def list_clients() -> list[Client]:
    return list(db.session.scalars(select(Client).order_by(Client.id)))


def delete_client(client_id: str) -> None:
    db.session.delete(get_client(client_id))
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
