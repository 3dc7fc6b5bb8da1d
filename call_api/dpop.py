"""DPoP-bound access tokens at the call API (RFC 9449 §7).

A token with ``cnf.jkt`` (issued with a DPoP proof) is accepted only as
``Authorization: DPoP <token>`` with a ``DPoP`` header holding a fresh proof for this
request: signed by the key whose thumbprint is ``cnf.jkt``, ``htm`` this method, ``htu``
this URL under ``CALL_WEB_URL`` or ``CALL_AUDIENCE`` (the call API's public base URLs,
settings: never the request's own ``Host``), ``ath`` the token's hash, its ``jti`` never
seen before (the ``dpop_jtis`` table, or Redis with ``CALL_DPOP_REDIS_URL``) and, with
``CALL_DPOP_NONCE``, a server nonce. Refusals are 401 with a ``WWW-Authenticate: DPoP``
challenge. Bearer tokens without ``cnf`` keep working as before.

``auth.require_token`` calls :func:`dpop_token` and :func:`check_binding`; nothing else.
"""

from __future__ import annotations

from typing import Any

from flask import Request, current_app

from shared.dpop import (
    ALGORITHMS,
    NonceSource,
    RedisReplayCache,
    ReplayCache,
    SqlReplayCache,
    challenge,
    check_bound_request,
)
from shared.errors import ClickCallError, InvalidRequest, InvalidToken

from .extensions import db
from .models import DPoPJti


def nonces() -> NonceSource | None:
    source: NonceSource | None = current_app.extensions.get("clickcall_dpop_nonces")
    if source is None and current_app.config["CALL_DPOP_NONCE"]:
        source = NonceSource(current_app.config["CALL_SECRET_KEY"].encode())
        current_app.extensions["clickcall_dpop_nonces"] = source
    return source


def replay_cache() -> ReplayCache:
    cache: ReplayCache | None = current_app.extensions.get("clickcall_dpop_replay")
    if cache is None:
        url = current_app.config["CALL_DPOP_REDIS_URL"]
        if url:
            cache = RedisReplayCache.from_url(url, "clickcall:calls:dpop:")
        else:
            cache = SqlReplayCache(lambda: db.session, DPoPJti)
        current_app.extensions["clickcall_dpop_replay"] = cache
    return cache


def _headers(error: str | None = None, description: str | None = None) -> dict[str, str]:
    headers = {"WWW-Authenticate": challenge(ALGORITHMS, error, description)}
    source = nonces()
    if source is not None:
        headers["DPoP-Nonce"] = source.current()
    return headers


def _refuse(error_class: type[ClickCallError], description: str) -> ClickCallError:
    return error_class(description, headers=_headers(error_class.error, description))


def dpop_token(request: Request) -> str | None:
    """The token of ``Authorization: DPoP <token>``, or ``None`` for any other scheme (the
    Bearer path, ``auth.extract_token``, reads those)."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "dpop":
        return None
    token = token.strip()
    if not token or len(token) > 8192:
        raise _refuse(InvalidToken, "The Authorization header must be 'DPoP <token>'.")
    if (
        "Authentication" in request.headers
        or "access_token" in request.args
        or (
            request.mimetype == "application/x-www-form-urlencoded"
            and request.method != "GET"
            and "access_token" in request.form
        )
    ):
        description = "Send the access token in exactly one place."
        raise InvalidRequest(description, headers=_headers("invalid_request", description))
    return token


def _urls(request: Request) -> list[str]:
    config = current_app.config
    bases = {config["CALL_WEB_URL"], config["CALL_AUDIENCE"]}
    return [b.rstrip("/") + request.path for b in bases if b.startswith(("http://", "https://"))]


def check_binding(claims: dict[str, Any], token: str, as_dpop: bool, request: Request) -> None:
    """A DPoP-bound token (``cnf.jkt``) needs the DPoP scheme and a valid proof by its key;
    the DPoP scheme needs a bound token. Raises a 401 with a DPoP challenge."""
    check_bound_request(
        claims,
        token,
        as_dpop,
        request.headers.getlist("DPoP"),
        method=request.method,
        urls=_urls(request),
        replay=replay_cache(),
        window=current_app.config["CALL_DPOP_PROOF_WINDOW"],
        nonces=nonces(),
        refuse=_refuse,
    )
