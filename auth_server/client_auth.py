"""Client authentication with a signed JWT: ``private_key_jwt`` and ``client_secret_jwt``
(RFC 7523 §2.2 and §3, OpenID Connect Core §9), at every endpoint that authenticates
clients (token, revocation, introspection, and any later one: they all take
``rules.CLIENT_AUTH_METHODS`` through Authlib's ``authenticate_client``).

The client sends ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer``
and ``client_assertion=<JWT>``. The JWT must be:

- signed with one of ``rules.ASSERTION_SIGNING_ALGS`` for the client's registered method
  (``alg`` ``none`` never; an HMAC ``alg`` never with a public key), and with the client's
  ``token_endpoint_auth_signing_alg`` when it registered one;
- verified with a key of the client's ``jwks`` or ``jwks_uri`` (``private_key_jwt``), or with
  its client secret (``client_secret_jwt``: the secret is kept encrypted for that, see
  :func:`encrypt_secret`);
- ``iss`` = ``sub`` = the client_id; ``aud`` the issuer, the token endpoint or the endpoint
  called; ``exp`` present and at most :data:`MAX_LIFETIME` seconds ahead; ``jti`` present and
  never seen before (the ``client_assertion_jtis`` table, shared by every replica).

Authlib's :class:`JWTBearerClientAssertion` provides the reading of the assertion; the
checks above are ours: Authlib accepts any ``exp`` and any algorithm the key allows.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import urllib3
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from flask import request as http
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from shared.errors import InvalidRequest
from shared.pinned import pinned_request

from .extensions import db
from .models import Client, ClientAssertionJti
from .rules import ASSERTION_SIGNING_ALGS, CLIENT_SECRET_JWT, JWT_AUTH_METHODS, PRIVATE_KEY_JWT

log = logging.getLogger("clickcall.auth")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# An assertion's exp may be at most this far ahead (a few minutes, as RFC 7523 §3 expects).
MAX_LIFETIME = 300
# Allowed clock difference with the client, both ways (exp, nbf, iat).
LEEWAY = 30
MAX_ASSERTION_LENGTH = 8192
# A client's jwks: at most this many keys, none with private members.
MAX_KEYS = 10
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
# jwks_uri: fetched with this timeout, at most this many bytes, cached this long; a key id
# not in the cached set triggers a new fetch at most once per JWKS_REFETCH seconds.
JWKS_TIMEOUT = 5.0
JWKS_MAX_BYTES = 64 * 1024
JWKS_CACHE_TTL = 300
JWKS_REFETCH = 60
JWKS_ADDRESSES_TRIED = 2  # a host with several addresses: the next one if one fails


# --- the client secret of client_secret_jwt, encrypted -----------------------------------


def _fernet() -> Fernet:
    """Fernet keyed by HKDF-SHA256 of SECRET_KEY (changing SECRET_KEY makes the stored
    secrets unreadable: those clients need `clients rotate-secret`)."""
    secret_key = str(current_app.config["SECRET_KEY"]).encode()
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"clickcall client_secret_jwt"
    ).derive(secret_key)
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str | None) -> str | None:
    if not token:
        return None
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        log.error("a client_secret_jwt secret cannot be decrypted: was SECRET_KEY changed?")
        return None


# --- the client's public keys --------------------------------------------------------------


MIN_RSA_BITS = 2048  # as for DPoP proofs (shared/dpop.py) and NIST SP 800-131A


def _rsa_bits(key: dict[str, Any]) -> int:
    """The size of an RSA JWK's modulus ``n`` in bits (0 if it cannot be read)."""
    n = key.get("n")
    if not isinstance(n, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except ValueError:
        return 0
    return int.from_bytes(raw, "big").bit_length()


def check_public_jwks(jwks: object) -> dict[str, Any]:
    """A JWK Set of public keys a client may register; ``InvalidRequest`` if not."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidRequest("The jwks must be a JWK Set: an object with a non-empty 'keys' list.")
    keys = jwks["keys"]
    if len(keys) > MAX_KEYS:
        raise InvalidRequest(f"The jwks has {len(keys)} keys; at most {MAX_KEYS} are accepted.")
    for key in keys:
        if not isinstance(key, dict):
            raise InvalidRequest("Every key of the jwks must be a JSON object (a JWK).")
        private = [m for m in PRIVATE_MEMBERS if m in key]
        if private:
            raise InvalidRequest(
                f"The jwks holds private or symmetric key material ({', '.join(private)}): "
                "register public keys only, and keep the private key to yourself."
            )
        if key.get("kty") not in ("RSA", "EC", "OKP"):
            raise InvalidRequest("Every key of the jwks must be an RSA, EC or OKP public key.")
        if key.get("use", "sig") != "sig":
            raise InvalidRequest("The jwks may hold signing keys only ('use': 'sig').")
        if key["kty"] == "OKP" and key.get("crv") not in ("Ed25519", "Ed448"):
            raise InvalidRequest("An OKP key of the jwks must be an Ed25519 or Ed448 signing key.")
        if key["kty"] == "RSA" and _rsa_bits(key) < MIN_RSA_BITS:
            raise InvalidRequest(f"RSA keys of the jwks must have at least {MIN_RSA_BITS} bits.")
    try:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidRequest("The jwks is not a valid JWK Set of public keys.") from exc
    return {"keys": keys}


def check_jwks_uri(uri: object, production: bool) -> str:
    """A URL the client's keys may be fetched from; https only in production."""
    if not isinstance(uri, str) or len(uri) > 2048:
        raise InvalidRequest("The jwks_uri must be a URL.")
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # an unclosed IPv6 literal ("https://[::1/k")
        raise InvalidRequest(f"The jwks_uri {uri!r} is not a valid URL.") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
        raise InvalidRequest(f"The jwks_uri {uri!r} must be an absolute http(s) URL.")
    if parts.username or parts.password:
        raise InvalidRequest(f"The jwks_uri {uri!r} must not contain userinfo.")
    try:
        port = parts.port
        parts.hostname.encode("idna")
    except (ValueError, UnicodeError) as exc:  # a port out of range, a host IDNA refuses
        raise InvalidRequest(f"The jwks_uri {uri!r} has an invalid host or port.") from exc
    if port == 0:
        raise InvalidRequest(f"The jwks_uri {uri!r} has an invalid host or port.")
    if production and parts.scheme != "https":
        raise InvalidRequest(f"The jwks_uri {uri!r} must use https:// in production.")
    return uri


class _JwksCache:
    """jwks_uri documents by URI, fetched at most every ``JWKS_REFETCH`` seconds each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def get(self, uri: str, refresh: bool = False) -> dict[str, Any] | None:
        now = time.time()
        with self._lock:
            cached = self._entries.get(uri)
        if cached is not None:
            age = now - cached[0]
            if age < JWKS_CACHE_TTL and not (refresh and age >= JWKS_REFETCH):
                return cached[1]
        document = _fetch_jwks(uri)
        with self._lock:
            if len(self._entries) > 1000:
                self._entries.clear()
            self._entries[uri] = (now, document)
        return document

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


JWKS_CACHE = _JwksCache()


def _resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order ([] if none)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return []
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


def _fetch_jwks(uri: str) -> dict[str, Any] | None:
    """The JWK Set at ``uri`` (public keys only), or ``None`` if it cannot be had.

    The host is resolved once; in production every address must be public (no loopback,
    private, link-local or metadata address: server-side request forgery through a
    registered client). The request then goes to a checked address itself
    (``shared.pinned``), so a second lookup cannot answer differently (DNS rebinding); no
    redirects, a timeout, a size limit.
    """
    try:
        check_jwks_uri(uri, production=False)  # stored before this check existed: again
        parts = urlsplit(uri)
        host = (parts.hostname or "").encode("idna").decode("ascii")
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except (InvalidRequest, ValueError, UnicodeError) as exc:
        log.warning("jwks_uri %s cannot be fetched: %s", uri, exc)
        return None
    addresses = _resolve(host, port)
    if not addresses:
        log.warning("jwks_uri %s: its host does not resolve", uri)
        return None
    if current_app.config["APP_ENV"] == "production" and not all(
        ipaddress.ip_address(a).is_global for a in addresses
    ):
        log.warning("jwks_uri %s: not fetched, its host is not a public address", uri)
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if parts.scheme == "https" else 80
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None and parts.port != default_port:
        host_header = f"{host_header}:{parts.port}"
    headers = {"Host": host_header, "Accept": "application/json"}
    body = None
    for address in addresses[:JWKS_ADDRESSES_TRIED]:
        try:
            with pinned_request(
                "GET",
                parts.scheme,
                address,
                port,
                host,
                path,
                headers=headers,
                timeout=JWKS_TIMEOUT,
            ) as response:
                if response.status != 200:
                    log.warning("jwks_uri %s answered %s", uri, response.status)
                    return None
                body = response.read(JWKS_MAX_BYTES + 1, decode_content=True)
            break
        except urllib3.exceptions.HTTPError as exc:
            log.warning("jwks_uri %s: %s could not be reached: %s", uri, address, exc)
    if body is None:
        return None
    if len(body) > JWKS_MAX_BYTES:
        log.warning("jwks_uri %s: document larger than %d bytes", uri, JWKS_MAX_BYTES)
        return None
    try:
        return check_public_jwks(json.loads(body))
    except (ValueError, RecursionError, InvalidRequest) as exc:
        log.warning("jwks_uri %s could not be used: %s", uri, exc)
        return None


def _candidate_keys(jwks: dict[str, Any] | None, kid: object, alg: str) -> list[Any]:
    if not jwks:
        return []
    key_set = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    family = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}.get(alg[:2])
    keys = [k for k in key_set.keys if k.key_type == family]
    if kid is not None:
        keys = [k for k in keys if k.kid == kid]
    return [k for k in keys if k.get("use", "sig") == "sig"]


def client_keys(client: Client, kid: object, alg: str) -> list[Any]:
    """The keys of ``client`` that may have signed an assertion with ``kid`` and ``alg``."""
    meta = client.client_metadata
    if meta.get("jwks"):
        return _candidate_keys(meta["jwks"], kid, alg)
    uri = meta.get("jwks_uri")
    if not uri:
        return []
    keys = _candidate_keys(JWKS_CACHE.get(uri), kid, alg)
    if not keys:  # the client may have rotated its keys: fetch again (rate-limited)
        keys = _candidate_keys(JWKS_CACHE.get(uri, refresh=True), kid, alg)
    return keys


# --- the jti replay cache --------------------------------------------------------------------


def claim_jti(client_id: str, jti: str, expires_at: int) -> bool:
    """Record ``jti`` as used until ``expires_at``; ``False`` if it was used already."""
    now = int(time.time())
    key = hashlib.sha256(f"{client_id}\x00{jti}".encode()).hexdigest()
    db.session.execute(delete(ClientAssertionJti).where(ClientAssertionJti.expires_at < now))
    db.session.add(ClientAssertionJti(key_hash=key, expires_at=expires_at))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


# --- the authentication methods ---------------------------------------------------------------


def _refuse(description: str) -> InvalidClientError:
    return InvalidClientError(status_code=401, description=description)


def audiences() -> list[str]:
    """What an assertion's ``aud`` may name: the issuer (what oauth4webapi sends), the token
    endpoint (RFC 7523 §3, OpenID Connect Core §9), or the endpoint being called."""
    issuer = current_app.config["AUTH_ISSUER"]
    return list(dict.fromkeys([issuer, f"{issuer}/oauth/token", f"{issuer}{http.path}"]))


class ClientAssertion(JWTBearerClientAssertion):  # type: ignore[misc]
    """One of ``private_key_jwt`` / ``client_secret_jwt`` (``method``): registered with
    ``server.register_client_auth_method(method, ClientAssertion(method))``.

    A client is authenticated by the instance of the method it registered; an assertion from
    a client registered for a secret method is refused, naming the method to use.
    """

    def __init__(self, method: str) -> None:
        super().__init__(validate_jti=True, leeway=LEEWAY)
        self.CLIENT_AUTH_METHOD = method

    def __call__(self, query_client: Any, request: Any) -> Client | None:
        form = request.form
        assertion = form.get("client_assertion")
        assertion_type = form.get("client_assertion_type")
        if not assertion and not assertion_type:
            return None
        if assertion_type != ASSERTION_TYPE:
            raise _refuse(
                f"The client_assertion_type must be {ASSERTION_TYPE} (RFC 7523), "
                "with the JWT in client_assertion."
            )
        if not assertion or len(assertion) > MAX_ASSERTION_LENGTH:
            raise _refuse("The client_assertion parameter must carry the signed JWT.")
        try:
            headers, claims = self.extract_assertion(assertion)
        except InvalidClientError as exc:
            raise _refuse("The client_assertion is not a signed JWT (compact JWS).") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _refuse("The client_assertion must name the client in its 'sub' claim.")
        client: Client | None = query_client(sub)
        if client is None:
            raise _refuse("The client named by the client_assertion's 'sub' does not exist.")
        method = client.token_endpoint_auth_method
        if method not in JWT_AUTH_METHODS:
            raise _refuse(
                f"This client is registered for {method}, not for a client_assertion: "
                "authenticate as it was registered."
            )
        if method != self.CLIENT_AUTH_METHOD:
            return None  # the other assertion method's turn
        form_client_id = form.get("client_id")
        if form_client_id is not None and form_client_id != sub:
            raise _refuse("The client_id parameter names another client than the assertion.")
        token = self._verify(client, assertion, headers)
        self.verify_claims(token.claims)
        request.client = client
        return client

    def _verify(self, client: Client, assertion: str, headers: dict[str, Any]) -> Any:
        method = self.CLIENT_AUTH_METHOD
        alg = headers.get("alg")
        allowed = ASSERTION_SIGNING_ALGS[method]
        registered = client.client_metadata.get("token_endpoint_auth_signing_alg")
        if registered:
            allowed = tuple(a for a in allowed if a == registered)
        if not isinstance(alg, str) or alg not in allowed:
            shown = alg if isinstance(alg, str) and alg.isalnum() and len(alg) < 20 else "?"
            raise _refuse(
                f"The client_assertion is signed with alg {shown}; a {method} client must "
                f"use {', '.join(allowed)}."
            )
        if method == PRIVATE_KEY_JWT:
            keys = client_keys(client, headers.get("kid"), alg)
            if not keys:
                raise _refuse(
                    "No key of this client's jwks or jwks_uri matches the client_assertion "
                    "(its kid and alg)."
                )
        else:
            secret = decrypt_secret(client.client_secret_encrypted)
            if secret is None:
                raise _refuse(
                    "This client's secret is not available for client_secret_jwt; an operator "
                    "must give it a new one (auth-server clients rotate-secret)."
                )
            keys = [OctKey.import_key(secret)]
        for key in keys:
            try:
                return jwt.decode(assertion, key, algorithms=[alg])
            except (JoseError, ValueError):
                continue
        raise _refuse("The client_assertion's signature does not verify with this client's key.")

    def verify_claims(self, claims: Any) -> None:
        now = int(time.time())
        client_id = claims.get("sub")
        if claims.get("iss") != client_id:
            raise _refuse("The client_assertion's 'iss' and 'sub' must both be the client_id.")
        aud = claims.get("aud")
        named = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(a, str) and a in audiences() for a in named):
            raise _refuse(
                "The client_assertion's 'aud' must be this server's issuer "
                f"({current_app.config['AUTH_ISSUER']}) or its token endpoint."
            )
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise _refuse("The client_assertion must have an 'exp' claim (a number of seconds).")
        if exp < now - LEEWAY:
            raise _refuse("The client_assertion has expired; sign a new one for each request.")
        if exp > now + MAX_LIFETIME + LEEWAY:
            raise _refuse(
                f"The client_assertion's 'exp' is too far ahead: at most {MAX_LIFETIME} "
                "seconds from now."
            )
        for name in ("nbf", "iat"):
            value = claims.get(name)
            if value is not None and (not isinstance(value, (int, float)) or value > now + LEEWAY):
                raise _refuse(f"The client_assertion's '{name}' claim is in the future.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 512:
            raise _refuse("The client_assertion must have a 'jti' claim: a unique string.")
        if not claim_jti(client_id, jti, exp + LEEWAY):
            raise _refuse(
                "The client_assertion was already used (its jti); sign a new one for each request."
            )


def register_methods(server: Any) -> None:
    """Register ``private_key_jwt`` and ``client_secret_jwt`` on the Authlib ``server``."""
    for method in (PRIVATE_KEY_JWT, CLIENT_SECRET_JWT):
        server.register_client_auth_method(method, ClientAssertion(method))
