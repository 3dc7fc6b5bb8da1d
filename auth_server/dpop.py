"""DPoP at the auth server (RFC 9449): proofs at the token, PAR and userinfo endpoints.

A token request with a valid ``DPoP`` header gets ``token_type: DPoP`` and an access token
carrying ``cnf.jkt`` (the proof key's RFC 7638 thumbprint, ``tokens.generate_access_token``);
the token row keeps the thumbprint (``Token.dpop_jkt``), and a public client's refresh
token is bound to it: refreshing needs a proof by the same key (``oauth2.RefreshTokenGrant``).
A client registered with ``dpop_bound_access_tokens`` gets no token without a proof. An
authorization request's ``dpop_jkt`` (RFC 9449 §10, or a proof sent to PAR) binds the code
to a key in the same way.

Proof validation, nonces and the replay cache are ``shared.dpop``'s; this module feeds them
the auth server's settings: ``AUTH_DPOP_PROOF_WINDOW``, ``AUTH_DPOP_NONCE`` (server nonces,
keyed from ``SECRET_KEY``), ``AUTH_DPOP_REDIS_URL`` (else the ``dpop_jtis`` table).
"""

from __future__ import annotations

import re
from typing import Any

from authlib.integrations.flask_oauth2.signals import client_authenticated
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    UnauthorizedClientError,
)
from flask import Response, current_app, has_request_context, request

from shared.dpop import (
    ALGORITHMS,
    USE_NONCE,
    DPoPError,
    NonceSource,
    RedisReplayCache,
    ReplayCache,
    SqlReplayCache,
    challenge,
    check_bound_request,
    validate_proof,
)
from shared.errors import ClickCallError, InvalidRequest, InvalidToken

from .extensions import db
from .models import DPoPJti

# Where a request keeps the thumbprint of its valid proof.
_JKT = "clickcall.dpop_jkt"
# An RFC 7638 SHA-256 thumbprint: 43 base64url characters.
JKT_FORMAT = re.compile(r"[A-Za-z0-9_-]{43}")
CLIENT_METADATA = "dpop_bound_access_tokens"


class InvalidDPoPProofError(OAuth2Error):
    """RFC 9449 §5: ``invalid_dpop_proof`` (400); with nonces on, the current nonce too."""

    error = "invalid_dpop_proof"
    status_code = 400

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        source = nonces()
        if source is not None:
            headers.append(("DPoP-Nonce", source.current()))
        return headers


class UseDPoPNonceError(InvalidDPoPProofError):
    """RFC 9449 §8: ``use_dpop_nonce`` with the nonce to use in ``DPoP-Nonce``."""

    error = USE_NONCE


def nonces() -> NonceSource | None:
    """The server nonces when ``AUTH_DPOP_NONCE`` is on (one source per app)."""
    if not current_app.config["AUTH_DPOP_NONCE"]:
        return None
    source = current_app.extensions.get("clickcall_dpop_nonces")
    if source is None:
        source = NonceSource(str(current_app.config["SECRET_KEY"]).encode())
        current_app.extensions["clickcall_dpop_nonces"] = source
    return source  # type: ignore[no-any-return]


def replay_cache() -> ReplayCache:
    cache = current_app.extensions.get("clickcall_dpop_replay")
    if cache is None:
        url = current_app.config["AUTH_DPOP_REDIS_URL"]
        if url:
            cache = RedisReplayCache.from_url(url, "clickcall:auth:dpop:")
        else:
            cache = SqlReplayCache(lambda: db.session, DPoPJti)
        current_app.extensions["clickcall_dpop_replay"] = cache
    return cache  # type: ignore[no-any-return]


def check_proof(path: str, access_token: str | None = None) -> str | None:
    """Validate this request's ``DPoP`` header for the endpoint at ``path`` (its URL under
    ``AUTH_ISSUER`` is the ``htu``); the proof key's thumbprint, or ``None`` without a
    header. ``InvalidDPoPProofError`` / ``UseDPoPNonceError`` when it is not valid."""
    values = request.headers.getlist("DPoP")
    if not values:
        return None
    if len(values) > 1:
        raise InvalidDPoPProofError("Send exactly one DPoP header.")
    try:
        proof = validate_proof(
            values[0],
            method=request.method,
            urls=[current_app.config["AUTH_ISSUER"] + path],
            replay=replay_cache(),
            window=current_app.config["AUTH_DPOP_PROOF_WINDOW"],
            nonces=nonces(),
            access_token=access_token,
        )
    except DPoPError as exc:
        if exc.error == USE_NONCE:
            raise UseDPoPNonceError(exc.description) from None
        raise InvalidDPoPProofError(exc.description) from None
    request.environ[_JKT] = proof.jkt
    return proof.jkt


def request_jkt() -> str | None:
    """The thumbprint of this request's valid proof (``check_proof``), if any."""
    if not has_request_context():
        return None
    return request.environ.get(_JKT)


def add_nonce(response: Response) -> Response:
    """With nonces on, every answer of a DPoP endpoint carries the current one."""
    source = nonces()
    if source is not None and "DPoP-Nonce" not in response.headers:
        response.headers["DPoP-Nonce"] = source.current()
    return response


def requires_dpop(client: Any) -> bool:
    return bool(client.client_metadata.get(CLIENT_METADATA))


def _refuse_without_proof(sender: Any, client: Any = None, **_: Any) -> None:
    """Authlib's ``client_authenticated`` signal at the token endpoint: a client registered
    with ``dpop_bound_access_tokens`` gets no token without a proof (RFC 9449 §5.2)."""
    if not has_request_context() or request.endpoint != "oauth.issue_token":
        return
    if client is not None and requires_dpop(client) and request_jkt() is None:
        raise InvalidDPoPProofError(
            "This client is registered with dpop_bound_access_tokens: every token request "
            "needs a DPoP proof (the DPoP header)."
        )


client_authenticated.connect(_refuse_without_proof)

IMPLICIT_REFUSED = (
    "This client is registered with dpop_bound_access_tokens: its access tokens come from the "
    "token endpoint with a DPoP proof, never from the authorization endpoint (use "
    "response_type=code)."
)


def check_authorization_request(grant: Any) -> None:
    """The implicit flow's access tokens (``token``, ``id_token token``) are issued at the
    authorization endpoint, where no proof is sent: a client registered with
    ``dpop_bound_access_tokens`` gets ``unauthorized_client`` instead (in the fragment of its
    validated redirect URI), not a bearer token. An ``id_token`` alone is no access token."""
    response_type = grant.request.payload.response_type or ""
    if "token" in response_type.split() and requires_dpop(grant.client):
        raise UnauthorizedClientError(
            IMPLICIT_REFUSED,
            state=grant.request.payload.state,
            redirect_uri=grant.redirect_uri,
            redirect_fragment=True,
        )


def check_bound_refresh(bound_jkt: str | None, client: Any) -> None:
    """A public client's refresh token bound to a key: the proof must be by that key."""
    if not bound_jkt or not client.is_public:
        return
    jkt = request_jkt()
    if jkt is None:
        raise InvalidGrantError(
            "The refresh token is bound to a DPoP key: send a DPoP proof signed with that key."
        )
    if jkt != bound_jkt:
        raise InvalidGrantError(
            "The refresh token is bound to another DPoP key than the one that signed this proof."
        )


def check_bound_code(bound_jkt: str | None) -> None:
    """A code requested with ``dpop_jkt`` (RFC 9449 §10): redeemed with a proof by that key."""
    if not bound_jkt:
        return
    jkt = request_jkt()
    if jkt is None:
        raise InvalidGrantError(
            "The authorization code is bound to a DPoP key (dpop_jkt): send a DPoP proof "
            "signed with that key."
        )
    if jkt != bound_jkt:
        raise InvalidGrantError(
            "The authorization code is bound to another DPoP key (dpop_jkt) than the one that "
            "signed this proof."
        )


def check_jkt_parameter(value: str | None) -> None:
    """The ``dpop_jkt`` authorization parameter, when sent, is a SHA-256 JWK thumbprint."""
    if value is not None and not JKT_FORMAT.fullmatch(value):
        raise InvalidRequestError(
            "The dpop_jkt parameter must be the RFC 7638 SHA-256 thumbprint of the DPoP key: "
            "43 base64url characters."
        )


def signing_algs() -> list[str]:
    return list(ALGORITHMS)


# --- userinfo: a resource server for DPoP-bound tokens (RFC 9449 §7) ----------------------

USERINFO_PATH = "/oauth/userinfo"


def _resource_refusal(error_class: type[ClickCallError], description: str) -> ClickCallError:
    headers = {"WWW-Authenticate": challenge(ALGORITHMS, error_class.error, description)}
    source = nonces()
    if source is not None:
        headers["DPoP-Nonce"] = source.current()
    return error_class(description, headers=headers)


def resource_token() -> str | None:
    """The token of ``Authorization: DPoP <token>``, or ``None`` for any other scheme."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "dpop":
        return None
    token = token.strip()
    if not token or len(token) > 8192:
        raise _resource_refusal(InvalidToken, "The Authorization header must be 'DPoP <token>'.")
    if request.mimetype == "application/x-www-form-urlencoded" and "access_token" in request.form:
        description = "Send the access token in exactly one place."
        raise _resource_refusal(InvalidRequest, description)
    return token


def check_resource_binding(token: str, as_dpop: bool) -> None:
    """At userinfo: a DPoP-bound token (``cnf.jkt``) comes with the DPoP scheme and a valid
    proof by its key (``ath`` included); the DPoP scheme with a bound token only. A token
    that is not this server's is left to the endpoint's own checks."""
    from .tokens import read_own_token

    check_bound_request(
        read_own_token(token),
        token,
        as_dpop,
        request.headers.getlist("DPoP"),
        method=request.method,
        urls=[current_app.config["AUTH_ISSUER"] + USERINFO_PATH],
        replay=replay_cache(),
        window=current_app.config["AUTH_DPOP_PROOF_WINDOW"],
        nonces=nonces(),
        refuse=_resource_refusal,
    )
