"""Client registration: metadata checks, secrets shown once and stored hashed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from shared.errors import InvalidRequest, ObjectDoesNotExist

from . import revocations
from .client_auth import check_jwks_uri, check_public_jwks, encrypt_secret
from .extensions import db
from .models import Client, hash_client_secret
from .rules import (
    CLIENT_AUTH_METHODS,
    CLIENT_SECRET_JWT,
    DEFAULT_GRANT_TYPES,
    DEFAULT_SCOPE,
    DEFAULT_SECRET_AUTH_METHOD,
    GRANT_TYPES,
    ID_TOKEN_RESPONSE_TYPES,
    IMPLICIT_RESPONSE_TYPES,
    JWT_AUTH_METHODS,
    MACHINE_SCOPES,
    PERSON_SCOPES,
    PRIVATE_KEY_JWT,
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
    auth_method: str | None = None,
    post_logout_redirect_uris: Iterable[str] | None = None,
) -> dict[str, object]:
    """Checked client metadata (RFC 7591 names), for a new client or an updated one.

    ``post_logout_redirect_uris`` (OpenID Connect RP-Initiated Logout §3.1; ``None``: not
    given, left out) are checked like redirect URIs. ``id_token`` response types need the
    ``openid`` scope.

    ``auth_method``: the ``token_endpoint_auth_method`` (default: ``none`` if ``public``,
    else ``client_secret_basic``); ``none`` exactly when ``public``.

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
            names = ", ".join(repr(t) if " " in t else t for t in RESPONSE_TYPES)
            raise InvalidRequest(f"Unknown response type {r!r}; use one of {names}.")
    implicit = [r for r in responses if r in IMPLICIT_RESPONSE_TYPES]
    if "implicit" in grants and not implicit:
        raise InvalidRequest("The implicit grant needs --response-type token.")
    if implicit and "implicit" not in grants:
        grants.append("implicit")
    if "code" in responses and "authorization_code" not in grants:
        raise InvalidRequest("--response-type code needs the authorization_code grant.")
    if public and "client_credentials" in grants:
        raise InvalidRequest("A public client cannot use client_credentials.")
    scopes = list(dict.fromkeys(scope.split()))
    for s in scopes:
        if s not in SCOPES:
            raise InvalidRequest(f"Unknown scope {s!r}; use one of {', '.join(SCOPES)}.")
    if any(r in ID_TOKEN_RESPONSE_TYPES for r in responses) and "openid" not in scopes:
        raise InvalidRequest("The id_token response types need the openid scope (--scope).")
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
            f"{' or '.join([s for s in scopes if s in PERSON_SCOPES] or PERSON_SCOPES[:1])}; "
            "register it with --scope admin (or introspect)."
        )
    uris = [validate_redirect_uri(u, production) for u in redirect_uris]
    if responses and not uris:
        raise InvalidRequest("A client that uses the authorization endpoint needs --redirect-uri.")
    logout_uris: dict[str, object] = {}
    if post_logout_redirect_uris is not None:
        logout_uris["post_logout_redirect_uris"] = [
            _post_logout_uri(u, production) for u in dict.fromkeys(post_logout_redirect_uris)
        ]
    return {
        **logout_uris,
        "client_name": name,
        "redirect_uris": uris,
        "grant_types": grants,
        "response_types": responses,
        "scope": " ".join(scopes),
        "token_endpoint_auth_method": _auth_method(auth_method, public),
    }


def _post_logout_uri(uri: str, production: bool) -> str:
    """A ``post_logout_redirect_uri``: the rules of redirect URIs (``InvalidRequest``)."""
    try:
        return validate_redirect_uri(uri, production)
    except InvalidRequest as exc:
        text = exc.description.replace("Redirect URI", "Post-logout redirect URI", 1)
        raise InvalidRequest(text) from exc


def _auth_method(auth_method: str | None, public: bool) -> str:
    method = auth_method or (PUBLIC_AUTH_METHOD if public else DEFAULT_SECRET_AUTH_METHOD)
    if method not in CLIENT_AUTH_METHODS:
        raise InvalidRequest(
            f"Unknown client authentication method {method!r}; use one of "
            f"{', '.join(CLIENT_AUTH_METHODS)}."
        )
    if (method == PUBLIC_AUTH_METHOD) != public:
        raise InvalidRequest(
            "A public client authenticates with none, and only a public client does."
        )
    return method


def client_keys_metadata(
    auth_method: str, jwks: object = None, jwks_uri: object = None, production: bool = False
) -> dict[str, object]:
    """The ``jwks`` or ``jwks_uri`` of a client (not both; one is required for
    ``private_key_jwt``), public keys only; ``jwks_uri`` https-only in production."""
    if jwks is not None and jwks_uri is not None:
        raise InvalidRequest("Send jwks or jwks_uri, not both.")
    if auth_method == PRIVATE_KEY_JWT and jwks is None and jwks_uri is None:
        raise InvalidRequest(
            "A private_key_jwt client must register its public keys: jwks or jwks_uri."
        )
    if jwks is not None:
        return {"jwks": check_public_jwks(jwks)}
    if jwks_uri is not None:
        return {"jwks_uri": check_jwks_uri(jwks_uri, production)}
    return {}


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
    auth_method: str | None = None,
    jwks: object = None,
    jwks_uri: str | None = None,
    post_logout_redirect_uris: Iterable[str] | None = None,
) -> RegisteredClient:
    """Register a client. The plain secret is returned once and only its hash is kept.

    ``auth_method`` ``private_key_jwt`` needs ``jwks`` or ``jwks_uri`` and gets no secret;
    ``client_secret_jwt`` gets a secret kept encrypted too (client_auth.encrypt_secret)."""
    metadata = client_metadata(
        name=name,
        redirect_uris=redirect_uris,
        grant_types=grant_types,
        response_types=response_types,
        scope=scope,
        public=public,
        production=production,
        allow_admin_for_users=allow_admin_for_users,
        auth_method=auth_method,
        post_logout_redirect_uris=post_logout_redirect_uris,
    )
    method = str(metadata["token_endpoint_auth_method"])
    metadata.update(client_keys_metadata(method, jwks, jwks_uri, production))
    client_id = client_id or new_client_id()
    if db.session.scalar(select(Client).where(Client.client_id == client_id)) is not None:
        raise InvalidRequest(f"The client_id {client_id!r} exists already.")
    has_secret = method not in (PUBLIC_AUTH_METHOD, PRIVATE_KEY_JWT)
    secret = (client_secret or secrets.token_urlsafe(32)) if has_secret else None
    client = Client(
        client_id=client_id,
        client_secret=hash_client_secret(secret) if secret else None,
        client_id_issued_at=int(time.time()),
    )
    if secret and method == CLIENT_SECRET_JWT:
        client.client_secret_encrypted = encrypt_secret(secret)
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
    post_logout_redirect_uris: Iterable[str] | None = None,
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
        post_logout_redirect_uris=post_logout_redirect_uris,
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
    if client.token_endpoint_auth_method == PRIVATE_KEY_JWT:
        raise InvalidRequest(
            "A private_key_jwt client authenticates with its keys: it has no secret."
        )
    secret = secrets.token_urlsafe(32)
    client.client_secret = hash_client_secret(secret)
    if client.token_endpoint_auth_method == CLIENT_SECRET_JWT:
        client.client_secret_encrypted = encrypt_secret(secret)
    db.session.commit()
    return secret


def describe(client: Client) -> dict[str, object]:
    meta = client.client_metadata
    out: dict[str, object] = {
        "client_id": client.client_id,
        "client_name": meta.get("client_name"),
        "public": client.is_public,
        "redirect_uris": meta.get("redirect_uris", []),
        "grant_types": meta.get("grant_types", []),
        "response_types": meta.get("response_types", []),
        "scope": meta.get("scope", ""),
    }
    if "post_logout_redirect_uris" in meta:
        out["post_logout_redirect_uris"] = meta["post_logout_redirect_uris"]
    method = client.token_endpoint_auth_method
    if method in JWT_AUTH_METHODS:
        out["token_endpoint_auth_method"] = method
    if meta.get("dynamically_registered"):
        out["dynamically_registered"] = True
    for flag in REQUEST_POLICY_FLAGS:  # PAR and DPoP: shown when on
        if meta.get(flag):
            out[flag] = True
    return out


# --- PAR and DPoP (issue 13 §4): client metadata flags (RFC 9126 §6, RFC 9449 §5.2) -----

REQUEST_POLICY_FLAGS = ("require_pushed_authorization_requests", "dpop_bound_access_tokens")


def set_request_policy(
    client_id: str, require_par: bool | None = None, require_dpop: bool | None = None
) -> Client:
    """Turn the client's PAR and DPoP requirements on or off (``None``: unchanged)."""
    client = get_client(client_id)
    meta = dict(client.client_metadata)
    for flag, value in zip(REQUEST_POLICY_FLAGS, (require_par, require_dpop), strict=True):
        if value is True:
            meta[flag] = True
        elif value is False:
            meta.pop(flag, None)
    client.set_client_metadata(meta)
    db.session.commit()
    return client
