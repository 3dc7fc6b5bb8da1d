"""The auth server's tables: users, clients, authorization codes, consents, issued tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from datetime import UTC, datetime

from authlib.integrations.sqla_oauth2 import OAuth2ClientMixin
from authlib.oauth2.rfc6749 import scope_to_list
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.audit import AuditEventMixin
from shared.dpop import DPoPJtiMixin

from .extensions import db
from .rules import (
    DEFAULT_ROLE,
    DEFAULT_SECRET_AUTH_METHOD,
    JWT_AUTH_METHODS,
    PUBLIC_AUTH_METHOD,
    SECRET_AUTH_METHODS,
    redirect_uri_allowed,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def sha256_hex(value: str) -> str:
    """Lookup hash for high-entropy random values (codes, refresh tokens)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hash_client_secret(secret: str) -> str:
    """HMAC-SHA-256 keyed by a per-client salt.

    Client secrets are 256-bit random values, so a fast keyed hash is enough to make a
    leaked table useless; a slow password hash would only cost every token request.
    """
    salt = secrets.token_hex(16)
    digest = hmac.new(salt.encode(), secret.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"hmac-sha256${salt}${digest}"


def check_client_secret_hash(stored: str | None, secret: str) -> bool:
    if not stored or not secret:
        return False
    try:
        scheme, salt, digest = stored.split("$", 2)
    except ValueError:
        return False
    if scheme != "hmac-sha256":
        return False
    candidate = hmac.new(salt.encode(), secret.encode("utf-8", "surrogateescape"), hashlib.sha256)
    return hmac.compare_digest(candidate.hexdigest(), digest)


class User(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(150), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set by `auth-server users disable`: the user cannot sign in or get tokens until enabled.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # One of rules.ROLES: which scopes the browser flows may grant this person
    # (rules.ROLE_SCOPES). Set by `auth-server users create --role` and `users set-role`.
    role: Mapped[str] = mapped_column(
        String(20), nullable=False, default=DEFAULT_ROLE, server_default=DEFAULT_ROLE
    )
    # OpenID Connect claims (scopes ``profile`` and ``email``): set by `auth-server users
    # create/update --name --email` and the operator console. ``None``: not known.
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    email_verified: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )

    @property
    def is_disabled(self) -> bool:
        return self.disabled_at is not None

    def get_user_id(self) -> str:
        return self.id


def active_user(user_id: str | None) -> User | None:
    """The user with this id, or ``None`` when there is none or an operator disabled it:
    the one check before anything acts for a user (sessions, token grants)."""
    user = db.session.get(User, user_id) if user_id else None
    return None if user is None or user.is_disabled else user


class Client(db.Model, OAuth2ClientMixin):  # type: ignore[name-defined,misc]
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    client_secret: Mapped[str | None] = mapped_column(String(160), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Dynamic client registration (RFC 7592): SHA-256 of the registration access token.
    registration_token_hash: Mapped[str | None] = mapped_column(
        String(64), unique=True, index=True, nullable=True
    )
    # client_secret_jwt only: the secret, Fernet-encrypted with a key derived from SECRET_KEY
    # (an HMAC key must be known in the clear; client_auth.py).
    client_secret_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == PUBLIC_AUTH_METHOD

    @property
    def token_endpoint_auth_method(self) -> str:
        return str(
            self.client_metadata.get("token_endpoint_auth_method", DEFAULT_SECRET_AUTH_METHOD)
        )

    def check_client_secret(self, client_secret: str) -> bool:
        return check_client_secret_hash(self.client_secret, client_secret)

    def get_default_redirect_uri(self) -> str | None:
        """Only an unambiguous default: with several registered URIs the client must say
        which (RFC 6749 §3.1.2.3)."""
        uris = self.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match; only native public clients on loopback may vary the port.

        RFC 8252 §7.3: a native app listening on ``http://127.0.0.1:{any port}/path`` cannot
        know its port in advance. Nothing else (scheme, host, path, query) may differ.
        """
        return redirect_uri_allowed(self.redirect_uris, redirect_uri, port_may_vary=self.is_public)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Public clients use ``none``; a client registered for a JWT assertion method
        (``private_key_jwt``, ``client_secret_jwt``) that method alone; other confidential
        ones either secret method."""
        if self.is_public:
            return method == PUBLIC_AUTH_METHOD
        if self.token_endpoint_auth_method in JWT_AUTH_METHODS:
            return method == self.token_endpoint_auth_method
        return method in SECRET_AUTH_METHODS

    def get_allowed_scope(self, scope: str | None) -> str:
        """The requested scope, or the client's registered scope when none is asked.

        Scopes the client is not registered for are an error (``invalid_scope``) rather than
        silently dropped, so a client learns at once that it asked for too much.
        """
        if not scope:
            return str(self.scope)
        allowed = set(self.scope.split())
        requested = scope_to_list(scope) or []
        if any(s not in allowed for s in requested):
            return None  # type: ignore[return-value]
        return " ".join(dict.fromkeys(requested))


class AuthorizationCode(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    redirect_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_type: Mapped[str] = mapped_column(String(40), default="code")
    scope: Mapped[str] = mapped_column(Text, default="")
    code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_challenge_method: Mapped[str | None] = mapped_column(String(10), nullable=True)
    # When the user signed in (their login session's start): the ID token's auth_time.
    auth_time: Mapped[int] = mapped_column(BigInteger, default=lambda: int(time.time()))
    # OpenID Connect: the authorization request's nonce, for the ID token.
    nonce: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # DPoP (RFC 9449 §10): the ``dpop_jkt`` of the authorization request; the code is then
    # redeemed only with a proof by that key.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Set when the code was presented again: a redemption still in flight is then refused
    # (oauth2.save_token checks it under a row lock), and what it produced is revoked.
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    def is_expired(self) -> bool:
        return self.expires_at < time.time()

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class Consent(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id", name="uq_consent_user_client"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id", ondelete="CASCADE"), nullable=False
    )
    scope: Mapped[str] = mapped_column(Text, nullable=False, default="")
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # When a token was last issued to the client for the user (``oauth2.save_token``, at
    # most once a minute): the account page's "last used". ``None``: never.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TokenFamily(db.Model):  # type: ignore[name-defined,misc]
    """One grant: the tokens that descend from one issue (a code's redemption, an implicit or
    client-credentials token) through refresh-token rotation.

    Its row is where concurrent requests on one grant meet: revoking the family (reuse
    detection, RFC 7009) locks it and sets ``revoked_at`` before revoking its tokens, and
    adding a token to it (``oauth2.save_token``) locks it and refuses when ``revoked_at`` is
    set, so no token issued during a reuse race survives. Times are Unix seconds.
    """

    __tablename__ = "token_families"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Token(db.Model):  # type: ignore[name-defined,misc]
    """One row per token response: the access token's ``jti`` and, if any, the refresh token.

    ``family_id`` ties together every token descending from one authorization (code or
    first refresh), so a replayed code or a reused refresh token can revoke them all; it
    names the :class:`TokenFamily` row those revocations lock.
    """

    __tablename__ = "tokens"
    __table_args__ = (
        Index("ix_tokens_family", "family_id"),
        Index("ix_tokens_code", "code_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    # 64: the device grant's name is a URN (urn:ietf:params:oauth:grant-type:device_code).
    grant_type: Mapped[str] = mapped_column(String(64), nullable=False)
    scope: Mapped[str] = mapped_column(Text, default="")
    issued_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    refresh_expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    refresh_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    family_id: Mapped[str] = mapped_column(
        String(36),
        ForeignKey("token_families.id", ondelete="CASCADE", name="fk_tokens_family"),
        nullable=False,
    )
    code_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # DPoP (RFC 9449 §5): a public client's refresh token is bound to the key of the proof
    # it was issued with (its RFC 7638 thumbprint); refreshing needs a proof by that key.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)

    # Authlib's TokenMixin / refresh-grant interface
    def get_scope(self) -> str:
        return self.scope

    def get_client_id(self) -> str:
        return self.client_id

    def get_expires_in(self) -> int:
        return self.expires_at - self.issued_at

    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self) -> bool:
        if self.refresh_expires_at is None:
            return True
        return self.refresh_expires_at < time.time()

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id


class LoginSession(db.Model):  # type: ignore[name-defined,misc]
    """A browser's sign-in, kept on the server (auth_server/sessions.py holds the rules).

    The session cookie carries only a random id; the row keeps its SHA-256, so a copy of
    the table signs nobody in. Ending the row (logout, password change, disabling the user,
    "sign out everywhere") signs out every copy of the cookie. Times are Unix seconds.
    """

    __tablename__ = "login_sessions"
    __table_args__ = (Index("ix_login_sessions_user", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_seen_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    user_agent: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ended_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # logout, signed_out_everywhere, password_changed, disabled, replaced
    end_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)


class Revocation(db.Model):  # type: ignore[name-defined,misc]
    """One entry of the revocation feed (auth_server/revocations.py holds the rules).

    ``id`` is the feed's cursor: never reused (AUTOINCREMENT on SQLite, a sequence on
    PostgreSQL), so a resource server that has read up to N never misses a later entry.
    ``kind`` is ``jti``, ``grant``, ``sub``, ``client`` or ``end_calls``; ``issued_before``
    bounds the last three (tokens with an earlier ``iat``; for ``end_calls``, calls started
    earlier). ``client_id`` names the client of an ``end_calls`` entry (``None`` otherwise).
    ``expires_at``: when every token the entry covers has expired, and the entry no longer
    matters. Times are Unix seconds.
    """

    __tablename__ = "revocations"
    __table_args__ = (
        Index("ix_revocations_kind_value", "kind", "value"),
        Index("ix_revocations_expires_at", "expires_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    value: Mapped[str] = mapped_column(String(128), nullable=False)
    issued_before: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditEvent(AuditEventMixin, db.Model):  # type: ignore[name-defined,misc]
    """One operator-console action, or a refused attempt (auth_server/audit.py records them;
    the columns and their meaning are ``shared.audit``'s)."""

    __tablename__ = "audit_events"


# --- OpenID Connect (issue 13 §1) ---------------------------------------------------------


class UsedNonce(db.Model):  # type: ignore[name-defined,misc]
    """A ``nonce`` an ID token was issued with (auth_server/oidc.py): the same client may
    not use it again while such an ID token is valid (``expires_at``), then it is pruned.

    The unique key makes the check hold under concurrency: of two requests with one nonce,
    the second insert fails. Only the nonce's SHA-256 is kept.
    """

    __tablename__ = "oidc_nonces"
    __table_args__ = (
        UniqueConstraint("client_id", "nonce_hash", name="uq_oidc_nonce_client"),
        Index("ix_oidc_nonces_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id", ondelete="CASCADE"), nullable=False
    )
    nonce_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


# --- dynamic client registration (issue 13 §2) --------------------------------------------


class RegistrationToken(db.Model):  # type: ignore[name-defined,misc]
    """An initial access token (RFC 7591 §3): lets its holder register clients.

    Minted by an operator (``auth-server registration-tokens create``); only its SHA-256 is
    kept. ``max_uses`` (``None``: unlimited) bounds the registrations it allows, counted in
    ``uses`` by a conditional ``UPDATE`` (registration.consume_token), so concurrent
    registrations never exceed it. Times are Unix seconds; ``expires_at`` ``None``: never.
    """

    __tablename__ = "registration_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    note: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    uses: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ClientAssertionJti(db.Model):  # type: ignore[name-defined,misc]
    """A client assertion already used (RFC 7523 §3: ``jti`` single-use): refused if seen
    again before ``expires_at`` (the assertion's ``exp``), then pruned."""

    __tablename__ = "client_assertion_jtis"
    __table_args__ = (Index("ix_client_assertion_jtis_expires_at", "expires_at"),)

    # SHA-256 of client_id and jti: the jti is the client's choice, of any length.
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


# --- device authorization grant (issue 13 §3) ---------------------------------------------


class DeviceCode(db.Model):  # type: ignore[name-defined,misc]
    """One device authorization request (RFC 8628; auth_server/device_flow.py holds the rules).

    The device polls with ``device_code`` (only its SHA-256 is kept); its user types
    ``user_code`` (8 letters of ``device_flow.USER_CODE_ALPHABET``, stored without the dash)
    on the /device page. ``status``: ``pending`` until the user decides, then ``approved``
    (``user_id`` and ``approved_scope``, narrowed to the user's role, set) or ``denied``;
    ``used`` once tokens were issued. ``poll_interval`` grows by 5 s at each ``slow_down``.
    Times are Unix seconds.
    """

    __tablename__ = "device_codes"
    __table_args__ = (Index("ix_device_codes_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    user_code: Mapped[str] = mapped_column(String(8), unique=True, nullable=False)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id", ondelete="CASCADE"), nullable=False
    )
    scope: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    poll_interval: Mapped[int] = mapped_column(Integer, nullable=False)
    last_polled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="pending")
    user_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    approved_scope: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    # Authlib's DeviceCredentialMixin
    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return self.approved_scope or ""

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self) -> bool:
        return self.expires_at <= time.time()


# --- PAR and DPoP (issue 13 §4) -----------------------------------------------------------


class PushedAuthorizationRequest(db.Model):  # type: ignore[name-defined,misc]
    """An authorization request pushed to ``/oauth/par`` (RFC 9126; auth_server/par.py).

    ``request_uri_hash``: SHA-256 of the ``request_uri`` handed to the client (only the hash
    is kept); ``params``: the validated request's parameters (JSON). Good until
    ``expires_at``, for one authorization: ``used_at`` is set when it completes (code issued
    or access denied). Times are Unix seconds.
    """

    __tablename__ = "pushed_authorization_requests"
    __table_args__ = (Index("ix_pushed_authorization_requests_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_uri_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    client_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("clients.client_id", ondelete="CASCADE"), nullable=False
    )
    params: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DPoPJti(DPoPJtiMixin, db.Model):  # type: ignore[name-defined,misc]
    """DPoP proofs already seen (RFC 9449 §11.1), shared by the replicas (shared/dpop.py)."""

    __tablename__ = "dpop_jtis"
