"""Discovery (RFC 8414), the JWKS, the original's /test page, and health checks."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from shared.app import ping_database
from shared.keys import jwks as jwks_document

from .. import flow, revocations
from ..dpop import signing_algs as dpop_signing_algs
from ..extensions import db
from ..oidc import discovery as oidc_discovery
from ..registration import discovery as registration_discovery
from ..rules import (
    CLIENT_AUTH_METHODS,
    CONFIDENTIAL_AUTH_METHODS,
    GRANT_TYPES,
    RESPONSE_TYPES,
    SCOPES,
)
from ..tokens import keyring

bp = Blueprint("meta", __name__)


def metadata() -> dict[str, Any]:
    issuer = current_app.config["AUTH_ISSUER"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/auth",
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "scopes_supported": list(SCOPES),
        "response_types_supported": list(RESPONSE_TYPES),
        "response_modes_supported": ["query", "fragment"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(CONFIDENTIAL_AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        # Not an RFC 8414 name: ClickCall's revocation feed (auth_server/revocations.py).
        "revocation_feed_endpoint": f"{issuer}/oauth/revocations",
        # OpenID Connect (issue 13 §1)
        **oidc_discovery(issuer),
        # dynamic client registration (issue 13 §2)
        **registration_discovery(issuer),
        # device authorization grant (issue 13 §3)
        "device_authorization_endpoint": f"{issuer}/oauth/device_authorization",
        # PAR and DPoP (issue 13 §4)
        "pushed_authorization_request_endpoint": f"{issuer}/oauth/par",
        "require_pushed_authorization_requests": bool(current_app.config["AUTH_REQUIRE_PAR"]),
        "dpop_signing_alg_values_supported": dpop_signing_algs(),
    }


@bp.get("/.well-known/oauth-authorization-server")
def authorization_server_metadata() -> Response:
    response = jsonify(metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    response = jsonify(jwks_document(keyring().keys()))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# A cursor is a row id: at most 18 digits keeps it within PostgreSQL's bigint.
CURSOR_DIGITS = 18


@bp.get("/oauth/revocations")
def revocation_feed() -> Response:
    """The revocation feed after the cursor ``after`` (default 0), for resource servers.

    Public: it names tokens and grants by their random ids, users only by a hash, and says
    nothing a token holder could use. Cacheable for a second, so a shared cache in front can
    absorb many pollers without delaying a revocation much.
    """
    after = request.args.get("after", "0")
    if not (after.isascii() and after.isdigit() and len(after) <= CURSOR_DIGITS):
        response = jsonify(
            error="invalid_request",
            error_description="The 'after' parameter must be a cursor: a whole number from 0 "
            "(a previous answer's 'cursor').",
        )
        response.status_code = 400
        return response
    revocations.prune()
    response = jsonify(revocations.feed(int(after)))
    response.headers["Cache-Control"] = "public, max-age=1"
    return response


@bp.get("/test")
def test_page() -> Response:
    """The original's redirect target: the code (query) or the token (fragment) as JSON."""
    query = request.args.to_dict()
    if flow.wants_json():
        return jsonify(query)
    return Response(render_template("test.html", query_json=json.dumps(query, indent=2)))


@bp.get("/readyz")
def readyz() -> Response:
    """Ready for traffic: the database answers and a signing key is loaded."""
    ping_database(db)
    key = keyring().current()
    return jsonify(status="ready", database="ok", signing_key=key.kid)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness and readiness: the process answers, the database answers, a key is loaded."""
    ping_database(db)
    keyring().current()
    return jsonify(status="ok", database="ok")
