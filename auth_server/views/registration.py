"""Dynamic client registration (RFC 7591) and the client configuration endpoint (RFC 7592).

Thin: the rules are in auth_server/registration.py, the protocol in Authlib's endpoints.
Both endpoints take JSON (``application/json``), are rate-limited per client address
(``AUTH_REGISTRATION_LIMIT``) and answer 404 when ``AUTH_REGISTRATION=off``.
"""

from __future__ import annotations

from authlib.oauth2.rfc7591 import InvalidClientMetadataError
from flask import Blueprint, Response, current_app, jsonify, request

from shared.errors import InvalidRequest
from shared.web import json_object_body

from ..extensions import authorization, limiter

bp = Blueprint("registration", __name__)


def _limit() -> str:
    return str(current_app.config["AUTH_REGISTRATION_LIMIT"])


@bp.before_request
def registration_enabled() -> Response | None:
    """404 when registration is off; a JSON object body for POST and PUT."""
    if current_app.config["AUTH_REGISTRATION"] == "off":
        response = jsonify(
            error="not_found",
            error_description="Dynamic client registration is turned off on this server.",
        )
        response.status_code = 404
        return response
    if request.method not in ("POST", "PUT"):
        return None
    if request.mimetype == "application/json":
        try:
            json_object_body()  # malformed, too deeply nested or unusable JSON: refused
            return None
        except InvalidRequest:
            pass
    error = InvalidClientMetadataError(
        description="The request body must be a JSON object of client metadata, sent as "
        "Content-Type: application/json (RFC 7591 section 3.1)."
    )
    return authorization.handle_error_response(None, error)  # type: ignore[no-any-return]


@bp.route("/oauth/register", methods=["POST"])
@limiter.limit(_limit, scope="registration")
def register_client() -> Response:
    """RFC 7591 §3: register a client; 201 with its credentials and metadata."""
    return authorization.create_endpoint_response(  # type: ignore[no-any-return]
        "client_registration"
    )


@bp.route("/oauth/register/<client_id>", methods=["GET", "PUT", "DELETE"])
@limiter.limit(_limit, scope="registration")
def configure_client(client_id: str) -> Response:
    """RFC 7592 §2: read, replace or delete a registration (registration access token)."""
    return authorization.create_endpoint_response(  # type: ignore[no-any-return]
        "client_configuration"
    )
