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
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.audit import AuditEventMixin

from .extensions import db
from .rules import (
    DEFAULT_ROLE,
    DEFAULT_SECRET_AUTH_METHOD,
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
        """Public clients use ``none``; confidential ones either secret method."""
        if self.is_public:
            return method == PUBLIC_AUTH_METHOD
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
    auth_time: Mapped[int] = mapped_column(BigInteger, default=lambda: int(time.time()))
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

    def get_nonce(self) -> None:
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
    grant_type: Mapped[str] = mapped_column(String(40), nullable=False)
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


# --- dynamic client registration (issue 13 §2) --------------------------------------------


# --- device authorization grant (issue 13 §3) ---------------------------------------------


# --- PAR and DPoP (issue 13 §4) -----------------------------------------------------------
