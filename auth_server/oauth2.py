"""All of the Authlib wiring: grants, PKCE policy, token storage, revocation, introspection."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, current_app
from sqlalchemy import select, update

from .extensions import authorization, db
from .metrics import TOKENS_ISSUED
from .models import AuthorizationCode, Client, Token, User, new_id, sha256_hex
from .oauth_errors import AuthorizationServer
from .rules import CLIENT_AUTH_METHODS, SECRET_AUTH_METHODS
from .tokens import generate_access_token, read_own_token, unverified_claims

log = logging.getLogger("clickcall.auth")

SECRET_METHODS = list(SECRET_AUTH_METHODS)
ALL_METHODS = list(CLIENT_AUTH_METHODS)


def query_client(client_id: str) -> Client | None:
    # NUL cannot be in any client_id, and PostgreSQL refuses it in a parameter (a 500).
    if not client_id or len(client_id) > 64 or "\x00" in client_id:
        return None
    return db.session.scalar(select(Client).where(Client.client_id == client_id))


def revoke_family(family_id: str) -> None:
    db.session.execute(
        update(Token)
        .where(Token.family_id == family_id, Token.revoked_at.is_(None))
        .values(revoked_at=int(time.time()))
    )


def save_token(token: dict[str, Any], request: Any) -> None:
    """Record every issued token: its ``jti``, and the refresh token's hash if any."""
    claims = unverified_claims(token["access_token"])
    code = getattr(request, "authorization_code", None)
    previous = getattr(request, "refresh_token", None)
    refresh = token.get("refresh_token")
    grant_type = request.payload.grant_type or "implicit"
    row = Token(
        jti=claims["jti"],
        client_id=request.client.client_id,
        user_id=request.user.id if request.user is not None else None,
        grant_type=grant_type,
        scope=token.get("scope", ""),
        issued_at=claims["iat"],
        expires_at=claims["exp"],
        refresh_token_hash=sha256_hex(refresh) if refresh else None,
        refresh_expires_at=(
            claims["iat"] + current_app.config["REFRESH_TOKEN_TTL"] if refresh else None
        ),
        family_id=previous.family_id if isinstance(previous, Token) else new_id(),
        code_id=code.id if isinstance(code, AuthorizationCode) else None,
    )
    db.session.add(row)
    db.session.commit()
    TOKENS_ISSUED.labels(grant_type).inc()


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only; required for public clients (RFC 9700 §2.1.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        request = grant.request
        challenge = request.payload.data.get("code_challenge")
        method = request.payload.data.get("code_challenge_method")
        if challenge and method != "S256":
            raise InvalidRequestError("The code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)
        client = request.client
        if self.required and client is not None and client.is_public and not challenge:
            raise InvalidRequestError(
                "Public clients must send a PKCE 'code_challenge' with method S256."
            )


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        db.session.add(
            AuthorizationCode(
                code_hash=sha256_hex(code),
                client_id=request.client.client_id,
                user_id=request.user.id,
                redirect_uri=request.payload.redirect_uri,
                response_type="code",
                scope=request.scope or "",
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                expires_at=int(time.time()) + current_app.config["AUTH_CODE_TTL"],
            )
        )
        db.session.commit()

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """Claim the code atomically; a second use revokes what the first one got.

        Each refusal says which: unknown, another client's, already used (and whether tokens
        issued from it were revoked), or expired.
        """
        row = db.session.scalar(
            select(AuthorizationCode).where(AuthorizationCode.code_hash == sha256_hex(code))
        )
        if row is None:
            raise InvalidGrantError(
                "The authorization code is unknown: this server never issued it, "
                "or it was cut short."
            )
        if row.client_id != client.client_id:
            raise InvalidGrantError("The authorization code was issued to another client.")
        claimed = db.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.id == row.id, AuthorizationCode.used_at.is_(None))
            .values(used_at=int(time.time()))
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise self._replayed(row)
        db.session.commit()
        if row.is_expired():
            raise InvalidGrantError(
                "The authorization code has expired; start a new authorization request."
            )
        return row

    @staticmethod
    def _replayed(row: AuthorizationCode) -> InvalidGrantError:
        """A second use: revoke what the first one got, and say whether there was any."""
        db.session.execute(
            update(Token)
            .where(Token.code_id == row.id, Token.revoked_at.is_(None))
            .values(revoked_at=int(time.time()))
        )
        issued = db.session.scalar(select(Token.id).where(Token.code_id == row.id).limit(1))
        db.session.commit()
        if issued is None:
            return InvalidGrantError(
                "The authorization code was already used; a code can be redeemed only once, "
                "start a new authorization request."
            )
        log.warning("authorization code replayed; tokens issued from it revoked")
        return InvalidGrantError(
            "The authorization code was already used; the tokens issued from it are revoked."
        )

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing to do: the code was marked used when it was claimed."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        return db.session.get(User, authorization_code.user_id)


class ImplicitGrant(grants.ImplicitGrant):
    """Tokens in the fragment, only for clients registered with ``response_type=token``."""

    def authenticate_token_endpoint_client(self) -> Client:
        # The authorization endpoint never sees a secret: identify the client by its id.
        client = query_client(self.request.payload.client_id or "")
        if client is None:
            raise InvalidClientError(description="The client does not exist on this server.")
        return client


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_METHODS


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Rotating refresh tokens; reuse of a rotated one revokes the family (RFC 9700 §4.14)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        row = db.session.scalar(
            select(Token).where(Token.refresh_token_hash == sha256_hex(refresh_token))
        )
        if row is None:
            raise InvalidGrantError("The refresh token is unknown: this server never issued it.")
        if row.client_id != self.request.client.client_id:
            raise InvalidGrantError("The refresh token was issued to another client.")
        if row.revoked_at is not None:
            raise InvalidGrantError("The refresh token has been revoked.")
        if row.is_expired():
            raise InvalidGrantError(
                "The refresh token has expired; start a new authorization request."
            )
        # Refuse a widened scope before claiming: a failed request must not burn the token.
        self._validate_token_scope(row)
        claimed = db.session.execute(
            update(Token)
            .where(Token.id == row.id, Token.refresh_used_at.is_(None))
            .values(refresh_used_at=int(time.time()))
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            revoke_family(row.family_id)
            db.session.commit()
            log.warning("refresh token reused; token family revoked")
            raise InvalidGrantError(
                "The refresh token was already used; every token of this grant is revoked."
            )
        db.session.commit()
        return row

    def authenticate_user(self, refresh_token: Token) -> User | None:
        if refresh_token.user_id is None:
            return None
        return db.session.get(User, refresh_token.user_id)

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Nothing to do: the refresh token was marked used when it was claimed."""


@dataclass
class TokenRef:
    """A token row as seen through one of its two token strings."""

    row: Token
    kind: str  # "access_token" | "refresh_token"

    def check_client(self, client: Client) -> bool:
        return self.row.client_id == client.client_id

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None or (
            self.kind == "refresh_token" and self.row.refresh_used_at is not None
        )

    def is_expired(self) -> bool:
        if self.kind == "refresh_token":
            return self.row.is_expired()
        return self.row.expires_at < time.time()

    def get_scope(self) -> str:
        return self.row.scope


def find_token(token_string: str, hint: str | None) -> TokenRef | None:
    if not token_string or len(token_string) > 8192:
        return None
    if hint != "access_token":
        row = db.session.scalar(
            select(Token).where(Token.refresh_token_hash == sha256_hex(token_string))
        )
        if row is not None:
            return TokenRef(row, "refresh_token")
    claims = read_own_token(token_string)
    if claims and "jti" in claims:
        row = db.session.scalar(select(Token).where(Token.jti == claims["jti"]))
        if row is not None:
            return TokenRef(row, "access_token")
    return None


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ALL_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRef | None:
        return find_token(token_string, token_type_hint)

    def authenticate_token(self, request: Any, client: Client) -> TokenRef | None:
        # RFC 7009 §2.2: a token of another client is simply not revoked (and not revealed).
        self.check_params(request, client)
        ref = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        return ref if ref is not None and ref.check_client(client) else None

    def revoke_token(self, token: TokenRef, request: Any) -> None:
        if token.kind == "refresh_token":
            revoke_family(token.row.family_id)
        elif token.row.revoked_at is None:
            token.row.revoked_at = int(time.time())
        db.session.commit()


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = SECRET_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRef | None:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: TokenRef, client: Client, request: Any) -> bool:
        """A client may introspect its own tokens; an ``admin`` client any token."""
        return token.check_client(client) or "admin" in client.scope.split()

    def introspect_token(self, token: TokenRef) -> dict[str, Any]:
        row = token.row
        user = db.session.get(User, row.user_id) if row.user_id else None
        body: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
            "scope": row.scope,
            "client_id": row.client_id,
            "sub": row.user_id or row.client_id,
            "iss": current_app.config["AUTH_ISSUER"],
            "iat": row.issued_at,
            "exp": row.expires_at if token.kind == "access_token" else row.refresh_expires_at,
        }
        if token.kind == "access_token":
            body["aud"] = current_app.config["CALL_AUDIENCE"]
            body["jti"] = row.jti
        if user is not None:
            body["username"] = user.username
        return body


def client_secret_basic(query: Any, request: Any) -> Client | None:
    """Authlib's ``client_secret_basic``, with malformed credentials treated as absent.

    Authlib raises ``UnicodeDecodeError`` on non-UTF-8 credentials and ``ValueError`` on a
    bare ``Authorization: Basic``; both would be a 500. Treated as no credentials, the
    request ends in the usual 401 ``invalid_client``.
    """
    try:
        return authenticate_client_secret_basic(query, request)  # type: ignore[no-any-return]
    except ValueError:  # includes UnicodeDecodeError
        return None


def register(server: AuthorizationServer) -> None:
    """Equip ``server`` with the grants, endpoints and client authentication above.

    Done once, when this module is imported (the Authlib way: the server, like the grant
    classes, lives at module level); each app only binds to it in :func:`config_oauth`.
    """
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
    server.register_grant(ImplicitGrant)
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    server.register_client_auth_method("client_secret_basic", client_secret_basic)


register(authorization)


def config_oauth(app: Flask) -> None:
    """Bind the module-level server to ``app``: token generator, scopes and storage."""
    app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = generate_access_token
    authorization.init_app(app, query_client=query_client, save_token=save_token)
