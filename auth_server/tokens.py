"""JWT access tokens in the RFC 9068 profile, signed with the current key.

Plugged into Authlib through ``OAUTH2_ACCESS_TOKEN_GENERATOR``; the lifetime comes from
``OAUTH2_TOKEN_EXPIRES_IN`` (the same setting Authlib reports as ``expires_in``).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
from flask import current_app, has_request_context, request

from .dpop import request_jkt
from .keyring import KeyRing
from .models import new_id

# Where a request keeps the grant (token family) of the tokens it issues.
_GRANT_ID = "clickcall.grant_id"
# The access token this request minted last, with its claims.
_ISSUED = "clickcall.issued_token"


def keyring() -> KeyRing:
    ring: KeyRing = current_app.extensions["clickcall_keyring"]
    return ring


def access_token_lifetime(grant_type: str) -> int:
    table: dict[str, int] = current_app.config["OAUTH2_TOKEN_EXPIRES_IN"]
    return int(table.get(grant_type, current_app.config["ACCESS_TOKEN_TTL"]))


def current_grant_id() -> str:
    """The grant of the tokens this request issues: the ``grant_id`` claim, stored as the
    token rows' ``family_id`` and named by the revocation feed's ``grant`` entries.

    A new one per request (a code redemption, an implicit authorization, client
    credentials), unless the request continues a grant (:func:`continue_grant`).
    """
    if not has_request_context():
        return new_id()
    grant_id: str = request.environ.setdefault(_GRANT_ID, new_id())
    return grant_id


def continue_grant(grant_id: str) -> None:
    """The tokens this request issues belong to ``grant_id`` (a refresh: its family)."""
    if has_request_context():
        request.environ.update({_GRANT_ID: grant_id})


def generate_access_token(client: Any, grant_type: str, user: Any, scope: str) -> str:
    """The Authlib access-token generator: a signed ``at+jwt``, naming its grant."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": current_app.config["AUTH_ISSUER"],
        "sub": user.id if user is not None else client.client_id,
        "aud": current_app.config["CALL_AUDIENCE"],
        "client_id": client.client_id,
        "scope": scope or "",
        "iat": now,
        "exp": now + access_token_lifetime(grant_type),
        "jti": secrets.token_urlsafe(18),
        "grant_id": current_grant_id(),
    }
    if user is not None:
        claims["username"] = user.username
    jkt = request_jkt()
    if jkt:  # DPoP-bound (RFC 9449 §6.1): usable only with proofs by this key
        claims["cnf"] = {"jkt": jkt}
    key = keyring().current()
    token = jwt.encode(
        claims,
        key.private_key,
        algorithm=key.algorithm,
        headers={"typ": "at+jwt", "kid": key.kid},
    )
    if has_request_context():  # for save_token, which would otherwise decode it again
        request.environ[_ISSUED] = (token, claims)
    return token


def read_own_token(token: str) -> dict[str, Any] | None:
    """Verify a token this server issued (for revocation and introspection)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        return None
    key = keyring().find(str(header.get("kid", "")))
    if key is None:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.private_key.public_key(),
            algorithms=[key.algorithm],
            audience=current_app.config["CALL_AUDIENCE"],
            issuer=current_app.config["AUTH_ISSUER"],
            options={"verify_exp": False},
        )
    except jwt.InvalidTokenError:
        return None
    return claims


def unverified_claims(token: str) -> dict[str, Any]:
    """Claims of a token we just minted ourselves (no need to re-verify): kept by
    :func:`generate_access_token` for this request, else decoded."""
    issued = request.environ.get(_ISSUED) if has_request_context() else None
    if issued is not None and issued[0] == token:
        return dict(issued[1])
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims
