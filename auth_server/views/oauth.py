"""The OAuth endpoints: authorization, token, revocation, introspection."""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import Blueprint, Response, request
from werkzeug.wrappers import Response as BaseResponse

from .. import flow
from ..extensions import authorization
from ..oauth_errors import MISSING_GRANT_TYPE, repeated_parameter, repeated_parameter_refusal

bp = Blueprint("oauth", __name__)

# Endpoints whose parameters come only as a form (RFC 6749 §3.2, RFC 7009, RFC 7662).
FORM_ENDPOINTS = frozenset({"oauth.issue_token", "oauth.revoke_token", "oauth.introspect_token"})


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
    return authorization.create_token_response()  # type: ignore[no-any-return]


@bp.route("/oauth/revoke", methods=["POST"])
def revoke_token() -> Response:
    return authorization.create_endpoint_response("revocation")  # type: ignore[no-any-return]


@bp.route("/oauth/introspect", methods=["POST"])
def introspect_token() -> Response:
    return authorization.create_endpoint_response("introspection")  # type: ignore[no-any-return]
