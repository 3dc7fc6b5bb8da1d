"""The OAuth endpoints: authorization, token, revocation, introspection."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.wrappers import Response as BaseResponse

from .. import dpop, flow, par
from ..extensions import authorization, limiter
from ..oauth_errors import MISSING_GRANT_TYPE, repeated_parameter, repeated_parameter_refusal

bp = Blueprint("oauth", __name__)

# Endpoints whose parameters come only as a form (RFC 6749 §3.2, RFC 7009, RFC 7662,
# RFC 8628 §3.1).
FORM_ENDPOINTS = frozenset(
    {
        "oauth.issue_token",
        "oauth.revoke_token",
        "oauth.introspect_token",
        "oauth.device_authorization",
        "oauth.pushed_authorization_request",  # RFC 9126 §2.1
    }
)


@bp.before_request
def forms_only() -> Response | None:
    """One reading only, for the token, revocation and introspection endpoints: 400
    ``invalid_request`` for a JSON (or other non-form) body, told what these endpoints take;
    for a parameter sent twice (RFC 6749 §3.2: Authlib would read the first ``grant_type``,
    ``code`` or ``scope``); and for a client that authenticates twice (§2.3)."""
    if request.method not in flow.UNSAFE_METHODS or request.endpoint not in FORM_ENDPOINTS:
        return None
    problem = flow.form_body_problem() or _repeated_parameter() or _two_client_authentications()
    if problem is None:
        return None
    error = InvalidRequestError(problem)
    return authorization.handle_error_response(None, error)  # type: ignore[no-any-return]


def _repeated_parameter() -> str | None:
    name = repeated_parameter(request.values)
    return None if name is None else repeated_parameter_refusal(name)


def _two_client_authentications() -> str | None:
    """RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each
    request." HTTP Basic with a ``client_secret`` parameter is two (Authlib would try the
    second when the first fails); a ``client_id`` parameter naming another client than the
    Basic credentials is two identities. The same ``client_id`` in both is allowed (§3.2.1).
    """
    scheme = request.headers.get("Authorization", "").strip().partition(" ")[0]
    if request.values.get("client_assertion") and (
        scheme.lower() == "basic" or request.values.get("client_secret")
    ):
        return (
            "The client authenticated twice, with a client_assertion and with a client secret; "
            "use one method."
        )
    if scheme.lower() != "basic":
        return None
    if request.values.get("client_secret"):
        return (
            "The client authenticated twice, with HTTP Basic and with a client_secret "
            "parameter; use one method: client_secret_basic or client_secret_post."
        )
    client_id = request.values.get("client_id")
    if client_id is None:
        return None
    try:
        basic_id, _ = extract_basic_authorization(request.headers)
    except ValueError:  # not UTF-8: Basic authentication fails on its own (401)
        return None
    if basic_id is not None and client_id != basic_id:
        return (
            "The client_id parameter names another client than the HTTP Basic credentials; "
            "identify the client once."
        )
    return None


@bp.route("/oauth/auth", methods=["GET"])
def authorize() -> BaseResponse:
    """Validate the request; then login (302), consent (303) or straight to the client."""
    found = flow.signed_in_grant()
    if not isinstance(found, tuple):
        return found
    user, grant = found
    return flow.proceed(grant, user, status=302)


@bp.route("/oauth/token", methods=["POST"])
def issue_token() -> Response:
    if not request.form.get("grant_type"):
        # RFC 6749 §5.2: a missing parameter is invalid_request (Authlib says
        # unsupported_grant_type, which is for grant types the server does not offer).
        error = InvalidRequestError(MISSING_GRANT_TYPE)
        return authorization.handle_error_response(None, error)  # type: ignore[no-any-return]
    try:
        dpop.check_proof("/oauth/token")  # RFC 9449 §5: a DPoP header binds what is issued
    except OAuth2Error as error:
        return authorization.handle_error_response(None, error)  # type: ignore[no-any-return]
    return dpop.add_nonce(authorization.create_token_response())


@bp.route("/oauth/revoke", methods=["POST"])
def revoke_token() -> Response:
    return authorization.create_endpoint_response("revocation")  # type: ignore[no-any-return]


@bp.route("/oauth/introspect", methods=["POST"])
def introspect_token() -> Response:
    return authorization.create_endpoint_response("introspection")  # type: ignore[no-any-return]


def _device_authorization_limit() -> str:
    return str(current_app.config["AUTH_DEVICE_AUTHORIZATION_LIMIT"])


@bp.route("/oauth/device_authorization", methods=["POST"])
@limiter.limit(_device_authorization_limit)
def device_authorization() -> Response:
    """RFC 8628 §3.1: a device code and the user code its user types on /device."""
    return authorization.create_endpoint_response(  # type: ignore[no-any-return]
        "device_authorization"
    )


@bp.route("/oauth/par", methods=["POST"])
def pushed_authorization_request() -> Response:
    """RFC 9126: validate and store an authorization request; 201 with its ``request_uri``."""
    try:
        body = par.push()
    except OAuth2Error as error:
        error.redirect_uri = None  # RFC 9126 §2.3: errors in the response, never a redirect
        error.state = None
        return dpop.add_nonce(authorization.handle_error_response(None, error))
    response = jsonify(body)
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return dpop.add_nonce(response)
