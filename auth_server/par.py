"""Pushed authorization requests (RFC 9126).

The client POSTs its whole authorization request to ``/oauth/par``, authenticated as at
the token endpoint; it is validated there and then (client, redirect URI, response type,
scope, PKCE), stored, and answered with a ``request_uri`` (``urn:ietf:params:oauth:
request_uri:…``, only its SHA-256 kept) valid ``AUTH_PAR_TTL`` seconds. The browser then
goes to ``/oauth/auth?client_id=…&request_uri=…``: the pushed parameters are used and any
others ignored. The ``request_uri`` carries through login and consent and is used up when
the authorization completes (code issued or access denied).

Once the authorization has started (the user is at the login or consent page) the user
has ``FLOW_GRACE`` seconds more to finish, however short ``AUTH_PAR_TTL``: the lifetime is
for reaching the authorization endpoint, not for typing a password.

A client registered with ``require_pushed_authorization_requests`` (or every client, with
``AUTH_REQUIRE_PAR``) gets an error page for a plain authorization request.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from flask import current_app, request
from sqlalchemy import delete, select, update
from werkzeug.datastructures import ImmutableMultiDict, MultiDict

from . import dpop, oidc
from .extensions import authorization, db
from .models import PushedAuthorizationRequest, sha256_hex
from .oauth2 import ALL_METHODS, query_client

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
CLIENT_METADATA = "require_pushed_authorization_requests"
PAR_ENDPOINT = "oauth.pushed_authorization_request"
AUTHORIZE_ENDPOINT = "oauth.authorize"
# Client authentication is not part of the authorization request.
CLIENT_AUTH_PARAMS = frozenset({"client_secret", "client_assertion", "client_assertion_type"})
# The login and consent pages' own fields: kept beside the pushed parameters.
PAGE_FIELDS = frozenset({"csrf_token", "username", "password", "grant", "next", "everywhere"})
# Seconds to finish signing in and consenting once the authorization has started.
FLOW_GRACE = 1800
_ROW = "clickcall.par_row"


class InvalidRequestURIError(OAuth2Error):
    """RFC 9126 §4: the ``request_uri`` is unknown, another client's, used or expired."""

    error = "invalid_request_uri"
    status_code = 400


class RequestNotSupportedError(OAuth2Error):
    """OpenID Connect Core §3.1.2.6: request objects (``request``, RFC 9101) are not taken."""

    error = "request_not_supported"
    status_code = 400


def requires_par(client: Any) -> bool:
    return bool(
        current_app.config["AUTH_REQUIRE_PAR"] or client.client_metadata.get(CLIENT_METADATA)
    )


def _use_values(params: dict[str, str]) -> None:
    """Make ``params`` this request's parameters, for Authlib and the pages alike
    (``request.values``); of what the request itself sent only the pages' own fields stay."""
    current = request._get_current_object()  # type: ignore[attr-defined]
    merged: MultiDict[str, str] = MultiDict(params)
    for source in (current.args, current.form):
        for key, value in source.items(multi=True):
            if key in PAGE_FIELDS:
                merged.add(key, value)
    current.values = ImmutableMultiDict(merged)


def push() -> dict[str, Any]:
    """``POST /oauth/par``: authenticate the client, validate its authorization request,
    store it; the ``request_uri`` and ``expires_in``. Raises ``OAuth2Error``."""
    client = authorization.authenticate_client(
        authorization.create_oauth2_request(None), ALL_METHODS, endpoint="token"
    )
    form = request.form
    if "request_uri" in form:
        raise InvalidRequestError(
            "A pushed authorization request cannot contain a request_uri: push the "
            "authorization parameters themselves."
        )
    if "request" in form:
        raise RequestNotSupportedError(
            "Request objects (the 'request' parameter) are not supported: push the "
            "authorization parameters as form fields."
        )
    params = {k: v for k, v in form.items() if k not in CLIENT_AUTH_PARAMS}
    if params.setdefault("client_id", client.client_id) != client.client_id:
        raise InvalidRequestError(
            "The client_id parameter names another client than the one that authenticated."
        )
    jkt = dpop.check_proof("/oauth/par")
    if jkt is not None:
        if params.setdefault("dpop_jkt", jkt) != jkt:
            raise dpop.InvalidDPoPProofError(
                "The dpop_jkt parameter is not the thumbprint of the DPoP proof's key."
            )
    dpop.check_jkt_parameter(params.get("dpop_jkt"))
    if not params.get("response_type"):
        raise InvalidRequestError("Missing 'response_type' parameter.")
    # prompt=none is decided at the authorization endpoint, where the browser (signed in or
    # not) comes: validated here without it, Authlib would answer login_required at once.
    _use_values({k: v for k, v in params.items() if k != "prompt"})
    try:
        grant = authorization.get_consent_grant(end_user=None)
    except ValueError as exc:  # Authlib echoing forbidden characters (see flow.validate_grant)
        raise InvalidRequestError(
            "The request contains characters that are not allowed in its parameters."
        ) from exc
    dpop.check_authorization_request(grant)
    oidc.check_request(grant)  # RFC 9126 §2.1: max_age, nonce, … refused now, not at /oauth/auth
    now = int(time.time())
    ttl = int(current_app.config["AUTH_PAR_TTL"])
    db.session.execute(
        delete(PushedAuthorizationRequest).where(
            PushedAuthorizationRequest.expires_at < now - FLOW_GRACE
        )
    )
    request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
    db.session.add(
        PushedAuthorizationRequest(
            request_uri_hash=sha256_hex(request_uri),
            client_id=client.client_id,
            params=json.dumps(params),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    db.session.commit()
    return {"request_uri": request_uri, "expires_in": ttl}


def _find(request_uri: str, client_id: str | None) -> PushedAuthorizationRequest:
    if not client_id:
        raise InvalidRequestError("The client_id parameter is required with a request_uri.")
    row = None
    if request_uri.startswith(REQUEST_URI_PREFIX) and len(request_uri) <= 200:
        row = db.session.scalar(
            select(PushedAuthorizationRequest).where(
                PushedAuthorizationRequest.request_uri_hash == sha256_hex(request_uri)
            )
        )
    if row is None:
        raise InvalidRequestURIError(
            "The request_uri is unknown: push the authorization request to the PAR endpoint "
            "first and use the request_uri it answers."
        )
    if row.client_id != client_id:
        raise InvalidRequestURIError("The request_uri was issued to another client.")
    if row.used_at is not None:
        raise InvalidRequestURIError(
            "The request_uri was already used: a pushed request serves one authorization; "
            "push it again."
        )
    grace = 0 if request.endpoint == AUTHORIZE_ENDPOINT else FLOW_GRACE
    if row.expires_at + grace < time.time():
        raise InvalidRequestURIError(
            "The request_uri has expired: push the authorization request again and use it at once."
        )
    return row


def prepare() -> None:
    """Before an authorization request is validated (the authorization endpoint, login and
    consent pages): resolve a ``request_uri`` into its pushed parameters, or refuse a plain
    request from a client that must push (error page, never a redirect)."""
    if request.endpoint == PAR_ENDPOINT:
        return
    request_uri = request.values.get("request_uri")
    if request_uri is None:
        client_id = request.values.get("client_id")
        client = query_client(client_id) if client_id else None
        if client is not None and requires_par(client):
            raise InvalidRequestError(
                "This client must push its authorization requests (RFC 9126): POST them to "
                "the pushed_authorization_request_endpoint and send only client_id and "
                "request_uri here."
            )
        dpop.check_jkt_parameter(request.values.get("dpop_jkt"))
        return
    row = _find(request_uri, request.values.get("client_id"))
    request.environ[_ROW] = row.id
    _use_values({**json.loads(row.params), "request_uri": request_uri})


def carried(params: dict[str, str]) -> dict[str, str]:
    """What login and consent carry of an authorization request: with a ``request_uri``,
    only it and ``client_id`` (the pushed parameters stay on the server)."""
    if "request_uri" in params:
        return {k: params[k] for k in ("client_id", "request_uri") if k in params}
    return params


def consume() -> OAuth2Error | None:
    """The authorization completes: use up its ``request_uri`` (if any) once; the error
    when another completion used it first."""
    row_id = request.environ.get(_ROW)
    if row_id is None:
        return None
    claimed = db.session.execute(
        update(PushedAuthorizationRequest)
        .where(
            PushedAuthorizationRequest.id == row_id, PushedAuthorizationRequest.used_at.is_(None)
        )
        .values(used_at=int(time.time()))
    )
    db.session.commit()
    request.environ.pop(_ROW, None)
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return InvalidRequestURIError(
            "The request_uri was already used: a pushed request serves one authorization; "
            "push it again."
        )
    return None
