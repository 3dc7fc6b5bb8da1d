"""DPoP proofs (RFC 9449): validation, server nonces and the ``jti`` replay cache.

Used by both services (the auth server's token, PAR and userinfo endpoints; the call API
for DPoP-bound access tokens) and importing neither. A proof is a compact JWS in the
``DPoP`` request header: header ``typ=dpop+jwt``, an asymmetric ``alg`` and the client's
public ``jwk``; claims ``jti``, ``htm``, ``htu``, ``iat`` and, at a resource server, ``ath``
(and ``nonce`` when the server asks for one). :func:`validate_proof` checks all of it (RFC
9449 §4.3) and returns the key's RFC 7638 thumbprint (``jkt``), the value access tokens
carry as ``cnf.jkt``.

The replay cache must be shared by every replica: a table in each service's database
(:class:`DPoPJtiMixin`, :class:`SqlReplayCache`), or Redis (:class:`RedisReplayCache`).
Server nonces are stateless: an HMAC over a time window, so replicas sharing the key
agree without storing anything (:class:`NonceSource`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import jwt
from sqlalchemy import BigInteger, Index, String, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from .errors import ClickCallError, InvalidToken
from .keys import thumbprint

# Asymmetric algorithms only (RFC 9449 §4.2: never "none", never a MAC).
ALGORITHMS = (
    "ES256",
    "ES384",
    "ES512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
)
INVALID_PROOF = "invalid_dpop_proof"
USE_NONCE = "use_dpop_nonce"
MAX_PROOF_LENGTH = 8192
MAX_JTI_LENGTH = 256
MIN_RSA_BITS = 2048
# Members that only a private JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "EdDSA": "Ed25519"}
KEY_TYPES = {"ES": "EC", "RS": "RSA", "PS": "RSA", "Ed": "OKP"}
# A server nonce is good for the window it was made in and the next one.
NONCE_WINDOW = 300


class DPoPError(Exception):
    """A proof refused: ``error`` is ``invalid_dpop_proof`` or ``use_dpop_nonce``."""

    def __init__(self, description: str, error: str = INVALID_PROOF) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class ProofRefused(ClickCallError):
    """At a resource (the call API, userinfo): 401 ``invalid_dpop_proof``."""

    status = 401
    error = INVALID_PROOF


class NonceRequired(ClickCallError):
    """At a resource: 401 ``use_dpop_nonce`` (with a ``DPoP-Nonce`` header)."""

    status = 401
    error = USE_NONCE


@dataclass(frozen=True)
class Proof:
    """A valid proof: its key's thumbprint, its ``jti`` and ``iat``."""

    jkt: str
    jti: str
    iat: int


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """The ``ath`` claim: base64url(SHA-256(ASCII(token)))."""
    return b64url(hashlib.sha256(token.encode("ascii", "replace")).digest())


_UNRESERVED = "-._~"


def _normalise_path(path: str) -> str:
    """Percent-encodings upper-cased, unreserved characters decoded (RFC 3986 §6.2.2)."""
    out = []
    for segment in path.split("/"):
        out.append(quote(unquote(segment), safe="!$&'()*+,;=:@" + _UNRESERVED))
    return "/".join(out) or "/"


def normalise_htu(url: str) -> str:
    """``url`` without query and fragment, compared as RFC 9449 §4.3 says: scheme and host
    lower-cased, the default port dropped, an empty path as ``/``. ``ValueError`` when it
    is not an absolute http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an absolute http(s) URL")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{_normalise_path(parts.path)}"


class ReplayCache(Protocol):
    def first_use(self, key: str, expires_at: int) -> bool:
        """Record ``key`` until ``expires_at``; ``False`` when it was recorded already."""


class NonceSource:
    """Stateless server nonces: ``base64url(window || HMAC(key, window)[:16])``.

    A nonce is accepted during the window it was made in and the next one, so a client
    holding one keeps it for 5 to 10 minutes; replicas sharing ``secret`` agree.
    """

    def __init__(self, secret: bytes, window: int = NONCE_WINDOW) -> None:
        self.key = hmac.new(secret, b"clickcall dpop nonce", hashlib.sha256).digest()
        self.window = window

    def _make(self, index: int) -> str:
        packed = struct.pack(">Q", index)
        return b64url(packed + hmac.new(self.key, packed, hashlib.sha256).digest()[:16])

    def current(self, now: float | None = None) -> str:
        return self._make(int(now if now is not None else time.time()) // self.window)

    def valid(self, nonce: object, now: float | None = None) -> bool:
        if not isinstance(nonce, str) or len(nonce) > 64:
            return False
        index = int(now if now is not None else time.time()) // self.window
        return any(hmac.compare_digest(nonce, self._make(i)) for i in (index, index - 1))


def _public_key(header: dict[str, Any], alg: str) -> Any:
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise DPoPError("The DPoP proof's header must carry the public key as 'jwk'.")
    if PRIVATE_MEMBERS & set(jwk):
        raise DPoPError(
            "The DPoP proof's 'jwk' contains private key material; send only the public key "
            "(and make a new key pair: this one is no longer secret)."
        )
    if jwk.get("kty") != KEY_TYPES[alg[:2]]:
        raise DPoPError(f"The DPoP proof's 'jwk' is not a key for {alg}.")
    if alg in CURVES and jwk.get("crv") != CURVES[alg]:
        raise DPoPError(f"The DPoP proof's 'jwk' must be on the {CURVES[alg]} curve for {alg}.")
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        raise DPoPError("The DPoP proof's 'jwk' is not a valid public key.") from None
    if jwk["kty"] == "RSA" and key.key_size < MIN_RSA_BITS:
        raise DPoPError(f"The DPoP proof's RSA key must have at least {MIN_RSA_BITS} bits.")
    return key


def validate_proof(
    proof: str | None,
    *,
    method: str,
    urls: Iterable[str],
    replay: ReplayCache,
    window: int,
    nonces: NonceSource | None = None,
    access_token: str | None = None,
    algorithms: Iterable[str] = ALGORITHMS,
    now: float | None = None,
) -> Proof:
    """Check a proof for this request (RFC 9449 §4.3); ``DPoPError`` saying what is wrong.

    ``urls``: the URLs this endpoint answers at (``htu`` must be one of them, compared
    normalised); ``window``: how far ``iat`` may be from now, either way; ``nonces``: when
    set, a current server nonce is required (``use_dpop_nonce`` otherwise);
    ``access_token``: at a resource server, ``ath`` must be its hash. The ``jti`` is
    recorded last, only for a proof valid in every other way.
    """
    now = time.time() if now is None else now
    if proof and "," in proof:  # several DPoP headers, joined by the server or a proxy
        raise DPoPError("Send exactly one DPoP header.")
    if not proof or len(proof) > MAX_PROOF_LENGTH or proof.count(".") != 2:
        raise DPoPError("The DPoP header must hold one proof: a compact JWS (a signed JWT).")
    try:
        header = jwt.get_unverified_header(proof)
    except jwt.InvalidTokenError:
        raise DPoPError("The DPoP proof is not a JWT.") from None
    if header.get("typ") != "dpop+jwt":
        raise DPoPError("The DPoP proof's header must have typ 'dpop+jwt'.")
    allowed = [a for a in algorithms if a in ALGORITHMS]
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:
        raise DPoPError(
            f"The DPoP proof must be signed with an asymmetric algorithm: {' '.join(allowed)}."
        )
    key = _public_key(header, alg)
    try:
        claims: dict[str, Any] = jwt.decode(
            proof,
            key,
            algorithms=[alg],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise DPoPError("The DPoP proof's signature does not verify with its 'jwk'.") from None
    except jwt.InvalidTokenError:
        raise DPoPError("The DPoP proof is not a valid signed JWT.") from None
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise DPoPError("The DPoP proof needs a 'jti': a unique random string per proof.")
    if claims.get("htm") != method:
        raise DPoPError(f"The DPoP proof's 'htm' must be this request's method, {method}.")
    htu = claims.get("htu")
    targets = {normalise_htu(u) for u in urls}
    try:
        matches = isinstance(htu, str) and normalise_htu(htu) in targets
    except ValueError:
        matches = False
    if not matches:
        shown = " or ".join(sorted(targets))
        raise DPoPError(
            f"The DPoP proof's 'htu' must be this request's URL without query or fragment: {shown}."
        )
    iat = claims.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise DPoPError("The DPoP proof needs an 'iat': the time it was made, in seconds.")
    if abs(now - iat) > window:
        raise DPoPError(
            f"The DPoP proof's 'iat' is more than {window} seconds from the server's time; "
            "make a new proof for every request (and check the client's clock)."
        )
    if nonces is not None:
        if "nonce" not in claims:
            raise DPoPError(
                "This server requires a nonce in DPoP proofs: use the one in the DPoP-Nonce "
                "response header.",
                USE_NONCE,
            )
        if not nonces.valid(claims["nonce"], now):
            raise DPoPError(
                "The DPoP proof's nonce is unknown or expired: use the one in the DPoP-Nonce "
                "response header.",
                USE_NONCE,
            )
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str):
            raise DPoPError(
                "The DPoP proof needs 'ath', the hash of the access token it goes with."
            )
        if not hmac.compare_digest(ath, access_token_hash(access_token)):
            raise DPoPError("The DPoP proof's 'ath' is not the hash of this access token.")
    jkt = thumbprint(key)
    replay_key = hashlib.sha256(f"{jkt}.{jti}".encode()).hexdigest()
    if not replay.first_use(replay_key, iat + window + 1):
        raise DPoPError(
            "This DPoP proof was used before (its 'jti' was seen); make a new proof for "
            "every request."
        )
    return Proof(jkt=jkt, jti=jti, iat=iat)


Refuse = Callable[[type[ClickCallError], str], ClickCallError]


def check_bound_request(
    claims: dict[str, Any] | None,
    token: str,
    as_dpop: bool,
    proofs: list[str],
    *,
    method: str,
    urls: list[str],
    replay: ReplayCache,
    window: int,
    nonces: NonceSource | None,
    refuse: Refuse,
) -> None:
    """At a resource server (the call API, userinfo), RFC 9449 §7: a DPoP-bound token
    (``cnf.jkt``) needs the DPoP scheme (``as_dpop``) and exactly one valid proof by its key,
    ``ath`` included; the DPoP scheme needs a bound token. ``claims`` is ``None`` for a token
    that is not the server's (left to its own checks). ``refuse`` makes the service's 401
    with its ``WWW-Authenticate: DPoP`` challenge."""
    cnf = claims.get("cnf") if claims else None
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if jkt is None:
        if as_dpop and claims is not None:
            raise refuse(
                InvalidToken,
                "This access token is not DPoP-bound: send it as 'Authorization: Bearer'.",
            )
        return
    if not as_dpop:
        raise refuse(
            InvalidToken,
            "This access token is DPoP-bound: send it as 'Authorization: DPoP <token>' with a "
            "DPoP proof, not as a bearer token.",
        )
    if len(proofs) != 1:
        raise refuse(ProofRefused, "Send exactly one DPoP header with the DPoP-bound token.")
    try:
        proof = validate_proof(
            proofs[0],
            method=method,
            urls=urls,
            replay=replay,
            window=window,
            nonces=nonces,
            access_token=token,
        )
    except DPoPError as exc:
        refused = NonceRequired if exc.error == USE_NONCE else ProofRefused
        raise refuse(refused, exc.description) from None
    if proof.jkt != jkt:
        raise refuse(
            ProofRefused,
            "The DPoP proof is signed by another key than the one this token is bound to.",
        )


def challenge(
    algorithms: Iterable[str],
    error: str | None = None,
    description: str | None = None,
) -> str:
    """A ``WWW-Authenticate: DPoP …`` value (RFC 9449 §7.1)."""
    parts = [f'algs="{" ".join(algorithms)}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description.replace(chr(34), chr(39))}"')
    return "DPoP " + ", ".join(parts)


# --- the replay cache -----------------------------------------------------------------------


class DPoPJtiMixin:
    """The replay cache's table: ``jti_hash`` String(64) primary key (SHA-256 of the key's
    thumbprint and the ``jti``), ``expires_at`` BigInteger (Unix seconds) with an index.
    A service declares ``class DPoPJti(DPoPJtiMixin, db.Model): __tablename__ = "dpop_jtis"``.
    """

    jti_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (Index(f"ix_{cls.__tablename__}_expires_at", "expires_at"),)  # type: ignore[attr-defined]


class SqlReplayCache:
    """The replay cache in a table: an insert, refused by the primary key when the ``jti``
    was seen. In the request's session (SQLite allows one writer: a second connection would
    wait for the session's own transaction), in a savepoint, committed at once so every
    replica sees it whatever the request does later; call it before the request writes.
    Expired rows are deleted every ``PRUNE_EVERY`` inserts of this process."""

    PRUNE_EVERY = 200

    def __init__(self, session: Callable[[], Any], model: Any) -> None:
        self.session = session
        self.table = model.__table__
        self._count = 0
        self._lock = threading.Lock()

    def first_use(self, key: str, expires_at: int) -> bool:
        with self._lock:
            self._count += 1
            prune = self._count % self.PRUNE_EVERY == 0
        session = self.session()
        if prune:
            session.execute(delete(self.table).where(self.table.c.expires_at < time.time()))
        try:
            with session.begin_nested():
                session.execute(insert(self.table).values(jti_hash=key, expires_at=expires_at))
        except IntegrityError:
            session.commit()  # the pruning, if any
            return False
        session.commit()
        return True


class RedisReplayCache:
    """The replay cache in Redis: ``SET key 1 NX EXAT expires_at``."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisReplayCache:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=2), prefix)

    def first_use(self, key: str, expires_at: int) -> bool:
        return bool(self.client.set(self.prefix + key, b"1", nx=True, exat=expires_at))
