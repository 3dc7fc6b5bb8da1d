"""The OAuth endpoints: authorization, token, revocation, introspection."""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, redirect

from .. import flow
from ..extensions import authorization

bp = Blueprint("oauth", __name__)


@bp.route("/oauth/auth", methods=["GET"])
def authorize() -> Response:
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
    return authorization.create_token_response()  # type: ignore[no-any-return]


@bp.route("/oauth/revoke", methods=["POST"])
def revoke_token() -> Response:
    return authorization.create_endpoint_response("revocation")  # type: ignore[no-any-return]


@bp.route("/oauth/introspect", methods=["POST"])
def introspect_token() -> Response:
    return authorization.create_endpoint_response("introspection")  # type: ignore[no-any-return]
