"""Bearer tokens: the ``require_token(scope)`` guard every protected view wears, and the
auth server's public keys it validates them with (PyJWT).

Keys come from a PEM file (``CALL_PUBLIC_KEY_FILE``) or the JWKS (``CALL_JWKS_URL``),
cached; an unknown ``kid`` triggers a refresh at most once per
``CALL_JWKS_MIN_REFRESH_INTERVAL`` seconds, so forged kids cannot make us hammer the auth
server, and a down auth server leaves the cached keys working.

PyJWT's own ``PyJWKClient`` refetches on every unknown kid with no rate limit and drops the
cache on a failed fetch; this small class keeps both properties. Reading a PEM key or a
JWKS document into keys is ``shared.keys``; the key sources here only fetch and cache.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import jwt
import requests
from flask import Request, current_app, g
from flask import request as current_request

from shared.errors import InsufficientScope, InvalidRequest, InvalidToken, MissingToken
from shared.keys import PublicKey, parse_jwks

from .dpop import check_binding, dpop_token
from .metrics import JWKS_REFRESHES, REVOKED_TOKENS_REFUSED
from .render import wants_xml
from .revocations import RevocationFeed

log = logging.getLogger("clickcall.call_api")

REALM = "clickcall"
MAX_TOKEN_LENGTH = 8192


class PemKeySource:
    """One public key from a PEM file; its kid is its RFC 7638 thumbprint."""

    def __init__(self, path: str) -> None:
        self.key = PublicKey.from_pem(path)

    def get(self, kid: str) -> PublicKey | None:
        return self.key if kid == self.key.kid else None

    def loaded(self) -> bool:
        return True

    def ensure_loaded(self) -> bool:
        return True


class JwksKeySource:
    def __init__(self, url: str, ttl: int, min_interval: int, timeout: int) -> None:
        self.url = url
        self.ttl = ttl
        self.min_interval = min_interval
        self.timeout = timeout
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at = 0.0
        self._attempted_at = float("-inf")
        self._lock = threading.Lock()

    def loaded(self) -> bool:
        return bool(self._keys)

    def ensure_loaded(self) -> bool:
        """Fetch the JWKS if nothing is cached yet (rate-limited like any refresh)."""
        if not self._keys:
            with self._lock:
                if not self._keys and self._may_attempt():
                    self._fetch()
        return bool(self._keys)

    def _fetch(self) -> None:
        self._attempted_at = time.monotonic()
        try:
            response = requests.get(self.url, timeout=self.timeout)
            response.raise_for_status()
            keys = parse_jwks(response.json())
        except (requests.RequestException, ValueError, AttributeError, TypeError) as exc:
            log.warning("JWKS fetch from %s failed: %s", self.url, type(exc).__name__)
            JWKS_REFRESHES.labels("error").inc()
            return
        finally:
            # The interval runs from the end of an attempt: a hung auth server that takes
            # the whole timeout cannot make attempts run back to back.
            self._attempted_at = time.monotonic()
        self._keys = keys
        self._fetched_at = time.monotonic()
        JWKS_REFRESHES.labels("ok").inc()

    def _may_attempt(self) -> bool:
        return time.monotonic() - self._attempted_at >= self.min_interval

    def _stale(self) -> bool:
        return time.monotonic() - self._fetched_at > self.ttl

    def get(self, kid: str) -> PublicKey | None:
        """The key for ``kid``: cached; refreshed when stale or unknown (rate-limited).

        A known key whose cache entry is merely stale is served at once while one request
        refreshes (stale-while-revalidate), so a slow auth server delays nobody else; after
        a successful refresh a retired key is gone and its tokens are refused.
        """
        key = self._keys.get(kid)
        if key is not None and not self._stale():
            return key
        if key is not None:
            if self._lock.acquire(blocking=False):
                try:
                    if self._stale() and self._may_attempt():
                        self._fetch()
                finally:
                    self._lock.release()
                return self._keys.get(kid)
            return key
        with self._lock:
            if kid not in self._keys and self._may_attempt():
                self._fetch()
            return self._keys.get(kid)


def key_source_from_config(config: dict[str, Any]) -> PemKeySource | JwksKeySource:
    if config.get("CALL_PUBLIC_KEY_FILE"):
        return PemKeySource(config["CALL_PUBLIC_KEY_FILE"])
    return JwksKeySource(
        config["CALL_JWKS_URL"],
        ttl=config["CALL_JWKS_CACHE_TTL"],
        min_interval=config["CALL_JWKS_MIN_REFRESH_INTERVAL"],
        timeout=config["CALL_JWKS_TIMEOUT"],
    )


def _challenge(
    error: str | None = None, description: str | None = None, scope: str | None = None
) -> dict[str, str]:
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return {"WWW-Authenticate": "Bearer " + ", ".join(parts)}


def invalid_token(description: str) -> InvalidToken:
    return InvalidToken(description, headers=_challenge("invalid_token", description))


def extract_token(request: Request, allow_query: bool) -> str:
    """The bearer token (RFC 6750 §2, plus the original's header), sent in exactly one place."""
    found: list[str] = []
    for header in ("Authorization", "Authentication"):
        value = request.headers.get(header)
        if value is None:
            continue
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise invalid_token(f"The {header} header must be 'Bearer <token>'.")
        found.append(token.strip())
    if "access_token" in request.args:
        if not allow_query:
            raise invalid_token("Tokens in the query string are disabled; use the header.")
        found.append(request.args["access_token"])
    if request.mimetype == "application/x-www-form-urlencoded" and request.method != "GET":
        if "access_token" in request.form:
            found.append(request.form["access_token"])
    if not found:
        raise MissingToken(headers=_challenge())
    if len(found) > 1:
        description = "Send the access token in exactly one place."
        err = InvalidRequest(description, headers=_challenge("invalid_request", description))
        raise err
    token = found[0]
    if len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token("The access token is too long.")
    return token


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, not yet trusted (``jwt.decode`` checks it all).

    ``jwt.get_unverified_header`` decodes and checks every segment, payload and signature
    included, which ``jwt.decode`` then does again: 50 µs per request on the machine of
    docs/PERFORMANCE.md ("Issue 14"); the header alone is 3 µs.
    """
    segment, dot, rest = token.partition(".")
    if not dot or rest.count(".") != 1 or len(segment) % 4 == 1 or not _B64URL.fullmatch(segment):
        raise invalid_token("The access token is not a JWT.")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # binascii.Error and UnicodeDecodeError included
        raise invalid_token("The access token is not a JWT.") from None
    if not isinstance(header, dict) or not isinstance(header.get("kid", ""), str):
        raise invalid_token("The access token is not a JWT.")
    return header


_B64URL_BYTES = re.compile(rb"[A-Za-z0-9_-]*")


class _JWS(jwt.api_jws.PyJWS):
    """PyJWT's JWS with its segment check done by a regular expression.

    PyJWT 2.15 checks the base64url alphabet character by character in Python (35 µs of a
    token's 55 µs ``_load``); this is the same rule set (padding, alphabet, canonical
    encoding), tested against PyJWT's own in tests/call_api/test_token_validation.py.
    """

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        stripped = segment.rstrip(b"=")
        padding = len(segment) - len(stripped)
        if (
            padding > 2
            or (padding and len(segment) % 4)
            or len(stripped) % 4 == 1
            or not _B64URL_BYTES.fullmatch(stripped)
        ):
            raise jwt.DecodeError(f"Invalid {name} padding")
        try:
            decoded = jwt.utils.base64url_decode(stripped)
        except (TypeError, binascii.Error) as err:
            raise jwt.DecodeError(f"Invalid {name} padding") from err
        if jwt.utils.base64url_encode(decoded) != stripped:
            raise jwt.DecodeError(f"Invalid {name} padding")
        return decoded


class _JWT(jwt.PyJWT):
    def __init__(self) -> None:
        super().__init__()
        self._jws = _JWS(options=self._jws.options)


JWT = _JWT()


def verify_token(
    token: str, source: PemKeySource | JwksKeySource, config: dict[str, Any]
) -> dict[str, Any]:
    """Claims of a valid RFC 9068 access token, or ``InvalidToken`` saying why not."""
    header = unverified_header(token)
    alg = header.get("alg")
    if alg not in config["CALL_ALGORITHMS"]:
        raise invalid_token("The access token is signed with an algorithm that is not accepted.")
    typ = str(header.get("typ", "")).lower()
    if typ not in ("at+jwt", "application/at+jwt"):
        raise invalid_token("The token is not an access token (typ must be at+jwt).")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise invalid_token("The access token has no key id (kid).")
    key = source.get(kid)
    if key is None:
        raise invalid_token("The access token is signed by an unknown key.")
    if key.algorithm != alg:
        raise invalid_token("The access token's algorithm does not match its key.")
    try:
        claims: dict[str, Any] = JWT.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=config["CALL_AUDIENCE"],
            issuer=config["AUTH_ISSUER"],
            leeway=config["CALL_TOKEN_LEEWAY"],
            options={"require": ["exp", "iat", "iss", "aud", "sub", "client_id"]},
        )
    except jwt.ExpiredSignatureError:
        raise invalid_token("The access token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise invalid_token("The access token is not valid yet.") from None
    except jwt.InvalidAudienceError:
        raise invalid_token("The access token is for another audience.") from None
    except jwt.InvalidIssuerError:
        raise invalid_token("The access token is from another issuer.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise invalid_token(f"The access token lacks the {exc.claim!r} claim.") from None
    except jwt.InvalidTokenError:
        raise invalid_token("The access token signature or claims are invalid.") from None
    # NUL: PostgreSQL text cannot hold it (psycopg2 raises ValueError, a 500 otherwise)
    if (
        not isinstance(claims.get("sub"), str)
        or not claims["sub"]
        or len(claims["sub"]) > 255
        or "\x00" in claims["sub"]
    ):
        raise invalid_token("The access token has an unusable subject.")
    if (
        not isinstance(claims.get("client_id"), str)
        or len(claims["client_id"]) > 64
        or "\x00" in claims["client_id"]
    ):
        raise invalid_token("The access token has an unusable client_id.")
    return claims


# Scopes that act for a person (their own calls): a token issued to a client alone
# (client_credentials) is refused for them whatever its scope says. The auth server never
# issues such a token with ``call``; this is the second line.
PERSON_SCOPES = frozenset({"call"})
# Scopes only a client acting for itself may use: a dialer is a phone system, not a person.
MACHINE_SCOPES = frozenset({"dialer"})


def is_person_token(claims: dict[str, Any]) -> bool:
    """Issued for a signed-in person: it names the user (``username``), and its subject is
    the user's id rather than the client's own (as in a client_credentials token)."""
    return isinstance(claims.get("username"), str) and claims["sub"] != claims["client_id"]


def refuse_revoked(claims: dict[str, Any]) -> None:
    """401 ``invalid_token`` for a token the auth server revoked (its revocation feed, as
    this process last read it: a lookup, no network; see call_api/revocations.py)."""
    feed: RevocationFeed = current_app.extensions["clickcall_revocations"]
    if feed.is_revoked(claims):
        REVOKED_TOKENS_REFUSED.inc()
        raise invalid_token("The access token has been revoked.")


def require_scope(claims: dict[str, Any], scope: str) -> None:
    if scope not in str(claims.get("scope", "")).split():
        description = f"This endpoint needs the '{scope}' scope."
        raise InsufficientScope(
            description, headers=_challenge("insufficient_scope", description, scope)
        )
    if scope in PERSON_SCOPES and not is_person_token(claims):
        description = (
            f"The '{scope}' scope acts for a person, and this token was issued to a client "
            "alone (client_credentials), for no user; calls belong to people."
        )
        raise InsufficientScope(
            description, headers=_challenge("insufficient_scope", description, scope)
        )
    if scope in MACHINE_SCOPES and is_person_token(claims):
        description = (
            f"The '{scope}' scope is for a phone system's own client (client_credentials), "
            "not for a token issued on a person's behalf."
        )
        raise InsufficientScope(
            description, headers=_challenge("insufficient_scope", description, scope)
        )


View = ParamSpec("View")
Result = TypeVar("Result")


def require_token(scope: str) -> Callable[[Callable[View, Result]], Callable[View, Result]]:
    """Guard a view: the request must carry a valid access token with ``scope``.

    Missing, bad or revoked token: 401 with an RFC 6750 ``WWW-Authenticate`` challenge; valid but
    without the scope: 403 ``insufficient_scope``. The claims are on ``flask.g`` (read them
    with ``current_claims()``). An unacceptable ``?format=`` or ``Accept`` is then refused
    (406) before the view runs, so a request that cannot be answered changes nothing.
    """

    def guard(view: Callable[View, Result]) -> Callable[View, Result]:
        @functools.wraps(view)
        def guarded(*args: View.args, **kwargs: View.kwargs) -> Result:
            config = current_app.config
            as_dpop = dpop_token(current_request)  # "Authorization: DPoP" (call_api/dpop.py)
            token = as_dpop or extract_token(current_request, config["CALL_ALLOW_QUERY_TOKEN"])
            claims = verify_token(token, current_app.extensions["clickcall_keys"], config)
            g.claims = claims  # for the view and the request log; never the token itself
            if as_dpop or "cnf" in claims:
                check_binding(claims, token, as_dpop is not None, current_request)
            refuse_revoked(claims)
            require_scope(claims, scope)
            wants_xml()
            return view(*args, **kwargs)

        guarded.required_scope = scope  # type: ignore[attr-defined]
        return guarded

    return guard


def current_claims() -> dict[str, Any]:
    """The verified claims of this request's access token (set by ``require_token``)."""
    claims: dict[str, Any] = g.claims
    return claims
