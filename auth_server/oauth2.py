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
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint
from authlib.oauth2.rfc8628 import DeviceCodeGrant as BaseDeviceCodeGrant
from authlib.oidc.core.grants import OpenIDImplicitGrant as AuthlibOpenIDImplicitGrant
from flask import Flask, current_app
from sqlalchemy import insert, select, update

from . import device_flow, dpop, revocations
from .client_auth import register_methods
from .consent import touch_consent
from .extensions import authorization, db
from .metrics import TOKENS_ISSUED
from .models import (
    AuthorizationCode,
    Client,
    Token,
    TokenFamily,
    User,
    active_user,
    sha256_hex,
)
from .oauth_errors import AuthorizationServer, one_of
from .oidc import (
    ClickCallIssuerParameter,
    ClickCallOpenIDCode,
    EndSession,
    ImplicitIDToken,
    record_nonce,
    request_auth_time,
)
from .registration import register_endpoints
from .revocations import revoke_code_tokens, revoke_family
from .rules import (
    CLIENT_AUTH_METHODS,
    CONFIDENTIAL_AUTH_METHODS,
    DEVICE_CODE_GRANT_TYPE,
    INTROSPECT_SCOPE,
    role_scopes,
    scope_for_role,
)
from .tokens import continue_grant, generate_access_token, read_own_token, unverified_claims

log = logging.getLogger("clickcall.auth")

# Confidential clients: a secret, or a signed client assertion (client_auth.py).
SECRET_METHODS = list(CONFIDENTIAL_AUTH_METHODS)
ALL_METHODS = list(CLIENT_AUTH_METHODS)


def query_client(client_id: str) -> Client | None:
    # NUL cannot be in any client_id, and PostgreSQL refuses it in a parameter (a 500).
    if not client_id or len(client_id) > 64 or "\x00" in client_id:
        return None
    return db.session.scalar(select(Client).where(Client.client_id == client_id))


def _lock_revoked_at(column: Any, key_column: Any, key: Any) -> tuple[bool, int | None]:
    """Lock one row (``SELECT … FOR UPDATE``) and read its ``revoked_at``.

    Returns (found, revoked_at), read after the lock is held: the latest committed value.
    """
    found = db.session.execute(select(column).where(key_column == key).with_for_update())
    row = found.one_or_none()
    return (row is not None, None if row is None else row[0])


def _refuse_issue(description: str) -> InvalidGrantError:
    db.session.rollback()  # nothing written; the row lock is released
    log.warning("token issue refused: its grant was revoked during the request")
    return InvalidGrantError(description)


_INSERT_FAMILY = insert(TokenFamily.__table__)
_INSERT_TOKEN = insert(Token.__table__)


def save_token(token: dict[str, Any], request: Any) -> None:
    """Record every issued token: its ``jti``, and the refresh token's hash if any.

    Reuse detection stays consistent under concurrency: a refresh adds its token to the
    family only after locking the family row and finding it not revoked, and a code's first
    token is saved only after locking the code row and finding it not revoked; otherwise
    the request is refused with ``invalid_grant`` and nothing is saved. Revocation takes
    the same locks (:func:`revoke_family`, :func:`revoke_code_tokens`), so whatever the
    interleaving, no token issued while its grant was being revoked survives.
    """
    claims = unverified_claims(token["access_token"])
    code = getattr(request, "authorization_code", None)
    previous = getattr(request, "refresh_token", None)
    refresh = token.get("refresh_token")
    grant_type = request.payload.grant_type or "implicit"
    if isinstance(previous, Token):
        found, revoked_at = _lock_revoked_at(
            TokenFamily.revoked_at, TokenFamily.id, claims["grant_id"]
        )
        if not found or revoked_at is not None:
            raise _refuse_issue(
                "The refresh token was used again, or revoked, while this request was being "
                "served; every token of this grant is revoked."
            )
    else:
        if isinstance(code, AuthorizationCode):
            found, revoked_at = _lock_revoked_at(
                AuthorizationCode.revoked_at, AuthorizationCode.id, code.id
            )
            if not found:  # deleted meanwhile: the user disabled, the consent withdrawn
                raise _refuse_issue(
                    "The authorization code was withdrawn while it was being redeemed; start "
                    "a new authorization request."
                )
            if revoked_at is not None:
                raise _refuse_issue(
                    "The authorization code was used twice at once; a code can be redeemed "
                    "only once, and the tokens issued from it are revoked."
                )
        # Core inserts, not ORM objects: nothing reads the rows back, and the unit of work
        # (flush, identity map) was a third of a client_credentials token's CPU
        # (docs/PERFORMANCE.md, "Issue 14: token issuance").
        db.session.execute(
            _INSERT_FAMILY,
            {
                "id": claims["grant_id"],
                "client_id": request.client.client_id,
                "user_id": request.user.id if request.user is not None else None,
                "created_at": claims["iat"],
            },
        )
    jkt = dpop.request_jkt()  # DPoP: the access token's cnf.jkt
    row = dict(
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
        family_id=claims["grant_id"],  # the refresh token's family when refreshing
        code_id=code.id if isinstance(code, AuthorizationCode) else None,
        dpop_jkt=jkt,
    )
    if jkt:
        token["token_type"] = "DPoP"  # RFC 9449 §5: the response Authlib sends is this dict
    db.session.execute(_INSERT_TOKEN, row)
    if request.user is not None:
        touch_consent(request.user.id, request.client.client_id)
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


def role_refusal(scope: str | None, role: str) -> str:
    """Why a user with ``role`` can be granted none of ``scope`` (an error description)."""
    allowed = role_scopes(role)
    names = " ".join((scope or "").split()) or "none"
    can = f"it allows {one_of(list(allowed), 'and')}" if allowed else "it allows no scope"
    return (
        f"The signed-in user's role ({role}) allows none of the requested scopes ({names}); {can}."
    )


class RoleScoped:
    """A user is granted only the scopes their role allows (``rules.ROLE_SCOPES``).

    For the browser grants and the refreshes of what they issued: the authorization
    request's scope is narrowed once the user is known (the consent page and the remembered
    consent see the narrowed scope, the code stores it, the implicit token carries it), and
    every token minted for a user is narrowed again, so a user whose role was lowered never
    gets back what the new role does not allow. Nothing left is ``invalid_scope``.
    RFC 6749 §3.3 lets the server issue less than asked; the response's ``scope`` says what.
    """

    request: Any
    ERROR_IN_FRAGMENT = False

    def limit_scope_to_role(self, user: User, redirect_uri: str | None) -> None:
        """Narrow the authorization request's scope to ``user``'s role, or raise."""
        allowed = scope_for_role(self.request.scope, user.role)
        if not allowed:
            raise InvalidScopeError(
                role_refusal(self.request.scope, user.role),
                state=self.request.payload.state,
                redirect_uri=redirect_uri,
                redirect_fragment=self.ERROR_IN_FRAGMENT,
            )
        self.request.scope = allowed

    def create_authorization_response(self, redirect_uri: str, grant_user: Any) -> Any:
        # Authlib validates the request again here, which resets request.scope.
        if isinstance(grant_user, User):
            self.limit_scope_to_role(grant_user, redirect_uri)
        return super().create_authorization_response(redirect_uri, grant_user)  # type: ignore[misc]

    def generate_token(self, user: Any = None, scope: str | None = None, **kwargs: Any) -> Any:
        if isinstance(user, User):
            allowed = scope_for_role(scope, user.role)
            if not allowed:
                raise InvalidScopeError(role_refusal(scope, user.role))
            scope = allowed
        return super().generate_token(user=user, scope=scope, **kwargs)  # type: ignore[misc]


class AuthorizationCodeGrant(RoleScoped, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        nonce = data.get("nonce")  # OpenID Connect: for the ID token, and never twice
        record_nonce(
            request.client.client_id,
            nonce,
            InvalidRequestError(state=request.payload.state, redirect_uri=self.redirect_uri),
        )
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
                auth_time=request_auth_time() or int(time.time()),
                nonce=nonce,
                dpop_jkt=data.get("dpop_jkt"),  # RFC 9449 §10 (checked by par.prepare)
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
        dpop.check_bound_code(row.dpop_jkt)  # before claiming: a wrong proof burns nothing
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
        issued = revoke_code_tokens(row.id)  # and at the call API (revoke_family records)
        db.session.commit()
        if not issued:
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
        return active_user(authorization_code.user_id)


class ImplicitGrant(RoleScoped, grants.ImplicitGrant):
    """Tokens in the fragment, only for clients registered with ``response_type=token``."""

    ERROR_IN_FRAGMENT = True

    def authenticate_token_endpoint_client(self) -> Client:
        # The authorization endpoint never sees a secret: identify the client by its id.
        client = query_client(self.request.payload.client_id or "")
        if client is None:
            raise InvalidClientError(description="The client does not exist on this server.")
        return client


class OpenIDImplicitGrant(RoleScoped, ImplicitIDToken, AuthlibOpenIDImplicitGrant):
    """OpenID Connect's implicit flow (``response_type=id_token`` or ``id_token token``),
    for clients registered with those response types; ``nonce`` required, never reused."""

    ERROR_IN_FRAGMENT = True

    def authenticate_token_endpoint_client(self) -> Client:
        client = query_client(self.request.payload.client_id or "")
        if client is None:
            raise InvalidClientError(description="The client does not exist on this server.")
        return client

    def validate_consent_request(self) -> str:
        # Authlib's override forgets what the base grant records: the validated redirect URI.
        redirect_uri: str = super().validate_consent_request()
        self.redirect_uri = redirect_uri
        return redirect_uri

    def create_granted_params(self, grant_user: Any) -> Any:
        record_nonce(
            self.request.client.client_id,
            self.request.payload.data.get("nonce"),
            InvalidRequestError(
                state=self.request.payload.state,
                redirect_uri=self.redirect_uri,
                redirect_fragment=True,
            ),
        )
        return super().create_granted_params(grant_user)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_METHODS


class RefreshTokenGrant(RoleScoped, grants.RefreshTokenGrant):
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
        dpop.check_bound_refresh(row.dpop_jkt, self.request.client)
        claimed = db.session.execute(
            update(Token)
            .where(Token.id == row.id, Token.refresh_used_at.is_(None))
            .values(refresh_used_at=int(time.time()))
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            family_id = row.family_id
            # PostgreSQL leaves a row that the claim waited for locked even though it no
            # longer matched; revoke_family locks the family before its tokens, so start
            # afresh (else two reuses deadlock: each holds what the other waits for).
            db.session.rollback()
            revoke_family(family_id)
            db.session.commit()
            log.warning("refresh token reused; token family revoked")
            raise InvalidGrantError(
                "The refresh token was already used; every token of this grant is revoked."
            )
        db.session.commit()
        return row

    def authenticate_user(self, refresh_token: Token) -> User | None:
        return active_user(refresh_token.user_id)

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Nothing to do: the refresh token was marked used when it was claimed."""

    def issue_token(self, user: User | None, refresh_token: Token) -> dict[str, Any]:
        continue_grant(refresh_token.family_id)  # the new tokens stay in the same grant
        return super().issue_token(user, refresh_token)  # type: ignore[no-any-return]


class DeviceCodeGrant(RoleScoped, BaseDeviceCodeGrant):
    """RFC 8628 §3.4: the device polls with its device code (auth_server/device_flow.py).

    Authlib's checks, with RFC 8628's error codes (Authlib answers an unknown device code
    with ``invalid_request`` and another client's with ``unauthorized_client``; RFC 6749
    §5.2 says ``invalid_grant``) and with the single use claimed atomically. The tokens are
    those of the authorization code grant: the approved scope, narrowed again to the user's
    role; a refresh token when the client has the ``refresh_token`` grant.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS

    def validate_token_request(self) -> None:
        device_code = self.request.payload.data.get("device_code")
        if not device_code:
            raise InvalidRequestError(
                f"The 'device_code' parameter is required with grant_type={self.GRANT_TYPE}."
            )
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                f"This client is not registered for grant_type={self.GRANT_TYPE}."
            )
        credential, user = device_flow.poll(device_code, client)
        self.request.user = user
        self.request.client = client
        self.request.credential = credential


class DeviceAuthorization(DeviceAuthorizationEndpoint):
    """RFC 8628 §3.1-3.2: ``POST /oauth/device_authorization``; the client authenticates as
    at the token endpoint (a public client sends its ``client_id``)."""

    CLIENT_AUTH_METHODS = ALL_METHODS

    def get_verification_uri(self) -> str:
        return f"{current_app.config['AUTH_ISSUER']}/device"

    def create_endpoint_response(self, request: Any) -> tuple[int, dict[str, Any], list[Any]]:
        client = self.authenticate_client(request)
        if not client.check_grant_type(DEVICE_CODE_GRANT_TYPE):
            raise UnauthorizedClientError(
                f"This client is not registered for grant_type={DEVICE_CODE_GRANT_TYPE}."
            )
        self.server.validate_requested_scope(request.payload.scope)
        scope = client.get_allowed_scope(request.payload.scope)
        if scope is None:
            raise InvalidScopeError()  # described by oauth_errors: which scope, and why
        device_code, row = device_flow.start(client, scope)
        uri = self.get_verification_uri()
        user_code = device_flow.display_user_code(row.user_code)
        body = {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": uri,
            "verification_uri_complete": f"{uri}?user_code={user_code}",
            "expires_in": row.expires_at - row.created_at,
            "interval": row.poll_interval,
        }
        headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
        ]
        return 200, body, headers


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
            revocations.record("jti", token.row.jti, expires_at=token.row.expires_at)
        db.session.commit()


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = SECRET_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRef | None:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: TokenRef, client: Client, request: Any) -> bool:
        """A client may introspect its own tokens; a client registered with the
        ``introspect`` scope any token (``admin`` alone is no such right)."""
        return token.check_client(client) or INTROSPECT_SCOPE in client.scope.split()

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
            if row.dpop_jkt:  # RFC 9449 §6.2
                body.update(token_type="DPoP", cnf={"jkt": row.dpop_jkt})
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
    server.register_grant(
        AuthorizationCodeGrant, [S256CodeChallenge(required=True), ClickCallOpenIDCode()]
    )
    server.register_grant(ImplicitGrant)
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    server.register_client_auth_method("client_secret_basic", client_secret_basic)
    # OpenID Connect (issue 13 §1)
    server.register_grant(OpenIDImplicitGrant)
    server.register_extension(ClickCallIssuerParameter())
    server.register_endpoint(EndSession)
    # dynamic client registration, private_key_jwt / client_secret_jwt (issue 13 §2)
    register_methods(server)
    register_endpoints(server)
    # device authorization grant (issue 13 §3)
    server.register_grant(DeviceCodeGrant)
    server.register_endpoint(DeviceAuthorization)
    # PAR and DPoP (issue 13 §4)


register(authorization)


def config_oauth(app: Flask) -> None:
    """Bind the module-level server to ``app``: token generator, scopes and storage."""
    app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = generate_access_token
    authorization.init_app(app, query_client=query_client, save_token=save_token)
