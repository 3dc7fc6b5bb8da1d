"""OpenID Connect on top of Authlib: ID tokens, the claims of ``profile`` and ``email``,
nonces, ``prompt`` and ``max_age``, userinfo, RP-initiated logout and RFC 9207's ``iss``.

Authlib supplies the protocol (``OpenIDCode`` adds the ID token to the code grant's token
response, ``OpenIDImplicitGrant`` answers ``response_type=id_token`` and ``id_token token``,
``EndSessionEndpoint`` validates logout requests, ``IssuerParameter`` adds ``iss``); this
module supplies what Authlib leaves to the server: the signing key (the keyring's current
key, so ID tokens and access tokens share the JWKS), the claims, the nonce store, the login
session's ``auth_time``, and the checks Authlib does not make. ``oauth2.py`` wires it in;
``flow.py`` applies ``prompt`` and ``max_age``; ``views/oidc.py`` serves the endpoints.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from typing import Any

import jwt
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import UserInfo
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    LoginRequiredError,
    RequestNotSupportedError,
)
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import current_app, g, has_request_context, session
from joserfc import jwk
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from shared.errors import InsufficientScope, InvalidRequest, InvalidToken, MissingToken
from shared.keys import SigningKey

from . import sessions
from .extensions import db
from .models import Client, Token, UsedNonce, User, active_user, sha256_hex
from .rules import ID_TOKEN_RESPONSE_TYPES, IMPLICIT_RESPONSE_TYPES
from .tokens import keyring, read_own_token

OPENID = "openid"
# What an ID token or the userinfo answer may hold (the discovery's claims_supported).
# (No c_hash: the hybrid flows, whose ID tokens carry one, are not offered.)
ID_TOKEN_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash")
SCOPE_CLAIMS = {"profile": ("name", "preferred_username"), "email": ("email", "email_verified")}
CLAIMS_SUPPORTED = [*ID_TOKEN_CLAIMS, *(c for claims in SCOPE_CLAIMS.values() for c in claims)]
# ``select_account`` is served like ``login``: the login form, where another account can
# sign in (there is no list of accounts to choose from).
PROMPT_VALUES = ("none", "login", "consent", "select_account")
MAX_NONCE = 255
MAX_AGE_DIGITS = 9
# The session-cookie key that says "the user signed in for this very authorization request"
# (prompt=login, max_age): the request then goes on instead of asking again.
REAUTHENTICATED = "oidc_reauthenticated"
REALM = "clickcall"


def discovery(issuer: str) -> dict[str, Any]:
    """The OpenID Provider Metadata fields (Discovery 1.0 §3, RP-Initiated Logout §2.1,
    RFC 9207 §3) of the discovery documents (``views/meta.metadata``)."""
    return {
        "userinfo_endpoint": f"{issuer}/oauth/userinfo",
        "end_session_endpoint": f"{issuer}/oauth/logout",
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": signing_algorithms(),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "claim_types_supported": ["normal"],
        "prompt_values_supported": list(PROMPT_VALUES),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
    }


# --- signing ----------------------------------------------------------------------------


def _jose_key(key: SigningKey) -> Any:
    if key.algorithm.startswith("RS"):
        return jwk.RSAKey.import_key(key.private_key)
    if key.algorithm.startswith("ES"):
        return jwk.ECKey.import_key(key.private_key)
    return jwk.OKPKey.import_key(key.private_key)


def signing_algorithms() -> list[str]:
    """The algorithms of the published keys, the current key's first: what ID tokens may be
    signed with (``id_token_signing_alg_values_supported``)."""
    ring = keyring()
    algorithms = [ring.current().algorithm, *(k.algorithm for k in ring.keys())]
    return list(dict.fromkeys(algorithms))


def id_token_ttl() -> int:
    return int(current_app.config["AUTH_ID_TOKEN_TTL"])


def request_auth_time() -> int | None:
    """When the browser of this request signed in (its login session's start), if it did."""
    if not has_request_context():
        return None
    token = session.get("sid")
    return sessions.session_auth_time(token) if isinstance(token, str) else None


def user_claims(user: User, scope: str | None) -> UserInfo:
    """``sub`` and the claims of the ``profile`` and ``email`` scopes in ``scope`` (a claim
    whose value is not known is left out)."""
    scopes = (scope or "").split()
    claims = UserInfo(sub=user.id)
    if "profile" in scopes:
        claims["preferred_username"] = user.username
        if user.name:
            claims["name"] = user.name
    if "email" in scopes and user.email:
        claims["email"] = user.email
        claims["email_verified"] = bool(user.email_verified)
    return claims


class IDTokenSigning:
    """What Authlib's ID-token code asks the server for: key, algorithm, header, claims.

    The keyring's current key signs (its ``kid`` in the header); ``iss``, ``aud`` (the
    client), ``iat``, ``exp`` (``AUTH_ID_TOKEN_TTL``) and ``auth_time`` (the login session's
    sign-in; the code's, at the token endpoint) are set here, ``nonce`` and the hashes by
    Authlib.
    """

    def _key(self) -> SigningKey:
        """The current key, read once per request (a rotation meanwhile cannot pair one
        key's ``kid`` with another's signature)."""
        if "oidc_signing_key" not in g:
            g.oidc_signing_key = keyring().current()
        return g.oidc_signing_key  # type: ignore[no-any-return]

    def resolve_client_private_key(self, client: Client) -> Any:
        return _jose_key(self._key())

    def get_client_algorithm(self, client: Client) -> str:
        return self._key().algorithm

    def get_encode_header(self, client: Client) -> dict[str, str]:
        key = self._key()
        return {"alg": key.algorithm, "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": current_app.config["AUTH_ISSUER"],
            "aud": client.client_id,
            "iat": now,
            "exp": now + id_token_ttl(),
        }
        auth_time = request_auth_time()
        if auth_time is not None:
            claims["auth_time"] = auth_time
        return claims


def quiet_eddsa(encode: Any, *args: Any) -> Any:
    """joserfc warns that "EdDSA" is deprecated (RFC 9864 names Ed25519); the keyring's
    EdDSA keys are Ed25519, and "EdDSA" is what relying parties accept today."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated")
        return encode(*args)


class ClickCallOpenIDCode(IDTokenSigning, OpenIDCode):
    """The code grant's OpenID Connect extension: an ID token beside the access token when
    the granted scope has ``openid``. Its profile and email claims come from userinfo (an
    access token is issued), so the ID token names the user by ``sub`` alone."""

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return nonce_used(request.payload.client_id, nonce)

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return UserInfo(sub=user.id)

    def encode_id_token(self, token: dict[str, Any], request: Any) -> Any:
        return quiet_eddsa(super().encode_id_token, token, request)


class ImplicitIDToken(IDTokenSigning):
    """For Authlib's ``OpenIDImplicitGrant`` (``oauth2.OpenIDImplicitGrant``): with
    ``response_type=id_token`` no access token is issued, so the ID token carries the
    profile and email claims; with ``id_token token`` they come from userinfo."""

    request: Any

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return nonce_used(request.payload.client_id, nonce)

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        if self.request.payload.response_type == "id_token":
            return user_claims(user, scope)
        return UserInfo(sub=user.id)


# --- nonces -------------------------------------------------------------------------------


def nonce_used(client_id: str | None, nonce: str) -> bool:
    """An ID token was issued to ``client_id`` with ``nonce`` and may still be valid."""
    found = db.session.scalar(
        select(UsedNonce.id).where(
            UsedNonce.client_id == (client_id or ""),
            UsedNonce.nonce_hash == sha256_hex(nonce),
            UsedNonce.expires_at >= int(time.time()),
        )
    )
    return found is not None


NONCE_REUSED = (
    "The nonce was used before with this client; send a new random nonce with every "
    "authorization request."
)


def record_nonce(client_id: str, nonce: str | None, error: OAuth2Error) -> None:
    """Remember ``nonce`` for ``client_id`` until every ID token issued with it has expired;
    raise ``error`` (described :data:`NONCE_REUSED`) when it is remembered already (two
    requests at once: the unique key refuses the second). Committed: a nonce is spent even
    if what follows fails."""
    if not nonce:
        return
    now = int(time.time())
    db.session.execute(delete(UsedNonce).where(UsedNonce.expires_at < now))
    live = db.session.scalar(
        select(UsedNonce).where(
            UsedNonce.client_id == client_id, UsedNonce.nonce_hash == sha256_hex(nonce)
        )
    )
    if live is not None:
        db.session.rollback()
        error.description = NONCE_REUSED
        raise error
    lifetime = current_app.config["AUTH_CODE_TTL"] + id_token_ttl()
    db.session.add(
        UsedNonce(client_id=client_id, nonce_hash=sha256_hex(nonce), expires_at=now + lifetime)
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        error.description = NONCE_REUSED
        raise error from None


# --- the authorization request: prompt, max_age, nonce -----------------------------------


def _param(grant: Any, name: str) -> str | None:
    value = grant.request.payload.data.get(name)
    return value if isinstance(value, str) else None


def prompts(grant: Any) -> list[str]:
    return (_param(grant, "prompt") or "").split()


def is_implicit(grant: Any) -> bool:
    return grant.request.payload.response_type in IMPLICIT_RESPONSE_TYPES


def is_id_token_response(grant: Any) -> bool:
    return grant.request.payload.response_type in ID_TOKEN_RESPONSE_TYPES


def _refusal(grant: Any, error: type[OAuth2Error], description: str) -> OAuth2Error:
    """``error`` for the client, sent to its validated redirect URI (query or fragment)."""
    return error(
        description,
        state=grant.request.payload.state,
        redirect_uri=grant.redirect_uri,
        redirect_fragment=is_implicit(grant),
    )


_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")


def check_request(grant: Any) -> None:
    """The OpenID Connect parameters Authlib leaves unchecked; ``invalid_request`` (or
    ``request_not_supported``) redirected to the client."""
    for value in prompts(grant):
        if value not in PROMPT_VALUES:
            raise _refusal(
                grant,
                InvalidRequestError,
                "The prompt value is not supported; use none, login, consent or select_account.",
            )
    if "none" in prompts(grant) and len(prompts(grant)) > 1:
        raise _refusal(
            grant, InvalidRequestError, "prompt=none cannot be combined with other prompt values."
        )
    max_age = _param(grant, "max_age")
    if max_age is not None and not (
        max_age.isascii() and max_age.isdigit() and len(max_age) <= MAX_AGE_DIGITS
    ):
        raise _refusal(
            grant, InvalidRequestError, "The max_age parameter must be a whole number of seconds."
        )
    nonce = _param(grant, "nonce")
    if nonce is not None and (len(nonce) > MAX_NONCE or not _PRINTABLE.match(nonce)):
        raise _refusal(
            grant,
            InvalidRequestError,
            f"The nonce must be 1 to {MAX_NONCE} printable ASCII characters.",
        )
    # Authlib's OpenID implicit grant honours response_mode (query would put the tokens in
    # the query, form_post answers with a page); the OAuth grants ignore it, as before.
    mode = _param(grant, "response_mode")
    if is_id_token_response(grant) and mode not in (None, "fragment"):
        raise _refusal(
            grant, InvalidRequestError, "This response_type is answered in the fragment only."
        )
    if grant.request.payload.data.get("request") is not None:
        raise _refusal(
            grant,
            RequestNotSupportedError,
            "Request objects (the 'request' parameter) are not supported; send the "
            "parameters themselves.",
        )


def _fingerprint(params: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def mark_reauthenticated(params: dict[str, str]) -> None:
    """The user just signed in for the authorization request ``params``: its ``prompt=login``
    and ``max_age`` are satisfied for the rest of it (consent page included)."""
    if params:
        session[REAUTHENTICATED] = _fingerprint(params)


def reauthenticated(params: dict[str, str]) -> bool:
    return bool(params) and session.get(REAUTHENTICATED) == _fingerprint(params)


def forget_reauthentication() -> None:
    session.pop(REAUTHENTICATED, None)


def must_sign_in(grant: Any, params: dict[str, str]) -> bool:
    """The signed-in user must sign in again before this request goes on: ``prompt=login``
    or ``select_account``, or a sign-in older than ``max_age`` seconds (``max_age=0``: like
    ``prompt=login``) — unless they just did, for this very request."""
    if reauthenticated(params):
        return False
    asked = prompts(grant)
    if "login" in asked or "select_account" in asked:
        return True
    max_age = _param(grant, "max_age") or default_max_age(grant)
    if max_age is None or not max_age.isdigit():
        return False
    auth_time = request_auth_time()
    if auth_time is None:
        return True
    seconds = int(max_age)
    return seconds == 0 or int(time.time()) - auth_time > seconds


def default_max_age(grant: Any) -> str | None:
    """The client's registered ``default_max_age`` (OpenID Connect Registration §2), used
    when the request has no ``max_age`` of its own."""
    client = getattr(grant, "client", None)
    value = client.client_metadata.get("default_max_age") if client is not None else None
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def login_required(grant: Any) -> OAuth2Error:
    return _refusal(
        grant,
        LoginRequiredError,
        "prompt=none was sent, but the user must sign in first (not signed in, or the "
        "sign-in is older than max_age).",
    )


def consent_required(grant: Any) -> OAuth2Error:
    return _refusal(
        grant,
        ConsentRequiredError,
        "prompt=none was sent, but the user has not yet authorized this application for "
        "the requested scope.",
    )


# --- RFC 9207: iss in every authorization response ---------------------------------------


def add_issuer(location: str) -> str:
    """``location`` (a redirect to the client) with ``iss``: in the fragment when the
    response is there (implicit), else in the query. Registered redirect URIs have no
    fragment, so a ``#`` means a fragment response."""
    issuer = current_app.config["AUTH_ISSUER"]
    in_fragment = "#" in location
    part = location.split("#", 1)[1] if in_fragment else location.split("?", 1)[-1]
    if any(item.split("=", 1)[0] == "iss" for item in part.split("&")):
        return location
    return add_params_to_uri(location, {"iss": issuer}, fragment=in_fragment)  # type: ignore[no-any-return]


class ClickCallIssuerParameter(IssuerParameter):
    """Authlib's RFC 9207 extension, with ``iss`` in the fragment of fragment responses
    (Authlib would put it in the query of every one)."""

    def get_issuer(self) -> str:
        return str(current_app.config["AUTH_ISSUER"])

    def add_issuer_parameter(self, authorization_server: Any, response: Any) -> None:
        location = response.headers.get("Location")
        if location:
            response.headers["Location"] = add_issuer(location)


# --- userinfo (Core §5.3) -----------------------------------------------------------------


def _challenge(error: str | None = None, description: str | None = None) -> dict[str, str]:
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description}"')
    if error == "insufficient_scope":
        parts.append(f'scope="{OPENID}"')
    return {"WWW-Authenticate": "Bearer " + ", ".join(parts)}


def invalid_token(description: str) -> InvalidToken:
    return InvalidToken(description, headers=_challenge("invalid_token", description))


MAX_TOKEN_LENGTH = 8192


def bearer_token(headers: Any, form: Any, form_body: bool) -> str:
    """The access token of a userinfo request: ``Authorization: Bearer`` or, in a POST form
    body, ``access_token`` (RFC 6750 §2.1-2.2); exactly one of them."""
    found: list[str] = []
    header = headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise invalid_token("The Authorization header must be 'Bearer <token>'.")
        found.append(token.strip())
    if form_body and "access_token" in form:
        found.append(form["access_token"])
    if not found:
        raise MissingToken(
            "An access token is required: send it as 'Authorization: Bearer <token>'.",
            headers=_challenge(),
        )
    if len(found) > 1:
        description = "Send the access token in exactly one place."
        raise InvalidRequest(description, headers=_challenge("invalid_request", description))
    if len(found[0]) > MAX_TOKEN_LENGTH:
        raise invalid_token("The access token is too long.")
    return found[0]


def userinfo(token: str) -> dict[str, Any]:
    """The claims about the user an access token of this server was issued for: ``sub`` and
    those of its ``profile`` and ``email`` scopes. The token must be live here (signature,
    its record neither revoked nor expired, the user active) and carry ``openid``."""
    claims = read_own_token(token)
    if claims is None or "jti" not in claims:
        raise invalid_token("The access token is not one this server issued.")
    row = db.session.scalar(select(Token).where(Token.jti == claims["jti"]))
    if row is None or row.revoked_at is not None:
        raise invalid_token("The access token has been revoked.")
    if row.expires_at < time.time():
        raise invalid_token("The access token has expired.")
    if OPENID not in row.scope.split():
        description = "The userinfo endpoint needs an access token with the 'openid' scope."
        raise InsufficientScope(description, headers=_challenge("insufficient_scope", description))
    user = active_user(row.user_id)
    if user is None:
        raise invalid_token("The access token's user no longer exists or is disabled.")
    return dict(user_claims(user, row.scope))


# --- RP-initiated logout ------------------------------------------------------------------


HINT_INVALID = "The id_token_hint is not a valid ID token issued by this server."


def read_id_token_hint(token: str) -> dict[str, Any]:
    """The claims of an ID token this server signed (expired ones too: RP-Initiated Logout
    §2), or ``InvalidRequestError``. An access token is no ID token (``typ at+jwt``)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise InvalidRequestError(HINT_INVALID) from None
    key = keyring().find(str(header.get("kid", "")))
    if key is None or header.get("alg") != key.algorithm or header.get("typ") == "at+jwt":
        raise InvalidRequestError(HINT_INVALID)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.private_key.public_key(),
            algorithms=[key.algorithm],
            issuer=current_app.config["AUTH_ISSUER"],
            options={
                "verify_exp": False,
                "verify_aud": False,
                "require": ["iss", "sub", "aud", "iat"],
            },
        )
    except jwt.InvalidTokenError:
        raise InvalidRequestError(HINT_INVALID) from None
    aud = claims["aud"]
    if not (isinstance(aud, str) or (isinstance(aud, list) and len(aud) == 1)):
        raise InvalidRequestError(HINT_INVALID)
    return claims


class EndSession(EndSessionEndpoint):
    """Authlib's RP-initiated logout: the ``post_logout_redirect_uri`` must be registered
    for the client (``post_logout_redirect_uris``), and is used only with a valid
    ``id_token_hint``; ``state`` is echoed. The view ends the browser's session."""

    def _validate_id_token_hint(self, id_token_hint: str) -> dict[str, Any]:
        claims = read_id_token_hint(id_token_hint)
        aud = claims["aud"]
        claims["aud"] = aud if isinstance(aud, str) else aud[0]
        return claims

    def validate_request(self, request: Any) -> Any:
        client_id = request.payload.data.get("client_id")
        if client_id is not None and self.server.query_client(client_id) is None:
            raise InvalidRequestError("The client_id names no client of this server.")
        try:
            return super().validate_request(request)
        except InvalidRequestError as error:
            if error.description == "'client_id' does not match 'aud' claim":
                error.description = "The id_token_hint was issued to another client than client_id."
            raise

    def end_session(self, end_session_request: Any) -> None:
        """Done by the view (``flow.logout_user``), which knows the browser."""


def hint_user(end_session_request: Any) -> str | None:
    claims = end_session_request.id_token_claims
    return None if claims is None else str(claims.get("sub"))
