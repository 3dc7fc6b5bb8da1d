"""OpenID Connect endpoints: discovery, userinfo and RP-initiated logout (auth_server/oidc.py
holds the rules)."""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, jsonify, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from .. import dpop, flow, oidc
from ..extensions import authorization
from .meta import metadata

bp = Blueprint("oidc", __name__)

# The parameters of a logout request (RP-Initiated Logout 1.0 §2), carried through the
# confirmation page.
LOGOUT_PARAMS = (
    "id_token_hint",
    "client_id",
    "post_logout_redirect_uri",
    "state",
    "logout_hint",
    "ui_locales",
)


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    """OpenID Provider Metadata: the RFC 8414 document (the same fields, the same values)."""
    response = jsonify(metadata())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def userinfo_token() -> str:
    """The access token of this userinfo request (one place, for the DPoP check to join)."""
    as_dpop = dpop.resource_token()  # "Authorization: DPoP" (RFC 9449 §7)
    form_body = request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded"
    token = as_dpop or oidc.bearer_token(request.headers, request.form, form_body)
    dpop.check_resource_binding(token, as_dpop is not None)
    return token


@bp.route("/oauth/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """OpenID Connect Core §5.3: the signed-in user's claims, for an access token with
    ``openid``; RFC 6750 errors with a ``WWW-Authenticate`` challenge."""
    response = jsonify(oidc.userinfo(userinfo_token()))
    response.headers["Cache-Control"] = "no-store"
    return response


def _logout_params() -> dict[str, str]:
    return {k: request.values[k] for k in LOGOUT_PARAMS if request.values.get(k) is not None}


def _confirmation(end_request: Any, user: Any) -> BaseResponse:
    client = end_request.client
    client_name = client.client_name if client is not None else None
    if flow.wants_json():
        return jsonify(
            status="confirmation_required",
            username=user.username,
            client_name=client_name,
            csrf_token=flow.csrf_token(),
            **_logout_params(),
        )
    return Response(
        render_template(
            "logout_confirm.html",
            params=_logout_params(),
            client_name=client_name,
            username=user.username,
            csrf_token=flow.csrf_token(),
        )
    )


@bp.route("/oauth/logout", methods=["GET", "POST"])
def end_session() -> BaseResponse:
    """RP-initiated logout: end this browser's login session, then back to the client's
    registered ``post_logout_redirect_uri`` (with ``state``) when a valid ``id_token_hint``
    came along, else a signed-out page.

    Without a hint naming the signed-in user, the user confirms first (a POST with this
    session's CSRF token): a link on another site must not sign people out unasked.
    """
    if request.method == "POST":
        flow.require_form_body()
    try:
        end_request = authorization.validate_endpoint_request("end_session")
    except OAuth2Error as error:
        return flow.oauth_error(error)  # never redirected (RP-Initiated Logout §4)
    user = flow.current_user()
    confirmed = request.method == "POST" and request.form.get("confirm") == "yes"
    if confirmed:
        flow.check_csrf()
    if user is not None and not confirmed and oidc.hint_user(end_request) != user.id:
        return _confirmation(end_request, user)
    if user is not None:
        flow.logout_user()
    response = authorization.create_endpoint_response("end_session", end_request)
    if response is None:
        if flow.wants_json():
            response = jsonify(status="signed_out")
        else:
            response = Response(
                render_template("message.html", title="Signed out", message="You are signed out.")
            )
    response.headers["Cache-Control"] = "no-store"
    return response  # type: ignore[no-any-return]
