"""The OAuth endpoints: authorization, token, revocation, introspection."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from flask import Blueprint, Response, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from .. import flow
from ..extensions import authorization
from ..oauth_errors import MISSING_GRANT_TYPE

bp = Blueprint("oauth", __name__)

# Endpoints whose parameters come only as a form (RFC 6749 §3.2, RFC 7009, RFC 7662).
FORM_ENDPOINTS = frozenset({"oauth.issue_token", "oauth.revoke_token", "oauth.introspect_token"})


@bp.before_request
def forms_only() -> Response | None:
    """A JSON (or other non-form) body is told what these endpoints take: 400."""
    if request.method not in flow.UNSAFE_METHODS or request.endpoint not in FORM_ENDPOINTS:
        return None
    problem = flow.form_body_problem()
    if problem is None:
        return None
    error = InvalidRequestError(problem)
    return authorization.handle_error_response(None, error)  # type: ignore[no-any-return]


@bp.route("/oauth/auth", methods=["GET"])
def authorize() -> BaseResponse:
    """Validate the request; then login (302), consent (303) or straight to the client."""
    user = flow.current_user()
    try:
        grant = flow.validate_grant(user)
    except OAuth2Error as error:
        return flow.oauth_error(error)
    if user is None:
        return redirect(flow.with_query("login.login", flow.oauth_params()), 302)
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
