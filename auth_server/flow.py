"""The browser side of the authorization endpoint: who is signed in, CSRF, and the
login → consent → redirect decision, as plain functions the views call."""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError, UnsupportedResponseTypeError
from flask import Response, jsonify, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from shared.errors import CSRFError, InvalidRequest

from . import accounts
from .consent import has_consent
from .extensions import authorization
from .models import User
from .oauth_errors import echo

OAUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)
SCOPE_TEXT = {
    "call": "place, end and read phone calls on your behalf",
    "admin": "administer every user's calls",
}


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes["application/json"] > 0


def oauth_params() -> dict[str, str]:
    """The OAuth parameters of this request, to carry through login and consent."""
    return {k: request.values[k] for k in OAUTH_PARAMS if request.values.get(k) is not None}


def current_user() -> User | None:
    user_id = session.get("uid")
    return accounts.get_user(user_id) if isinstance(user_id, str) else None


def login_user(user: User) -> None:
    session.clear()  # no session fixation: a fresh session, and a fresh CSRF token
    session.permanent = True
    session["uid"] = user.id
    session["csrf"] = secrets.token_urlsafe(32)


def logout_user() -> None:
    session.clear()


def csrf_token() -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def form_body_problem() -> str | None:
    """Why this request's body cannot be read as a form, or ``None`` when it can.

    The OAuth endpoints and the login and consent forms take
    ``application/x-www-form-urlencoded`` (RFC 6749 §3.2, §4.1.3); a JSON body would read as
    no parameters at all, and the client would be told of a missing ``grant_type`` or a
    stale form instead of what is actually wrong.
    """
    if request.mimetype in FORM_TYPES:
        return None
    takes = "This endpoint takes application/x-www-form-urlencoded"
    fix = "send the parameters as a form (curl -d name=value or --data-urlencode name=value)"
    if request.mimetype:
        sent = request.mimetype if echo(request.mimetype) else "this Content-Type"
        return f"{takes}, not {sent}; {fix}."
    if request.content_length or request.get_data(cache=True):
        return f"{takes}, and this body has no Content-Type; {fix}."
    return None


def require_form_body() -> None:
    problem = form_body_problem()
    if problem:
        raise InvalidRequest(problem)


def check_csrf() -> None:
    """The form's ``csrf_token`` must be this session's (the login blueprint calls it for
    every unsafe request)."""
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CSRFError()


def with_query(endpoint: str, params: dict[str, str]) -> str:
    return url_for(endpoint) + ("?" + urlencode(params) if params else "")


def oauth_error(error: OAuth2Error) -> Response:
    """Redirect only to a validated redirect URI; otherwise show the error here."""
    if error.redirect_uri:
        return authorization.handle_error_response(None, error)  # type: ignore[no-any-return]
    authorization.describe(None, error)
    body = {"error": error.error, "error_description": error.description}
    if wants_json():
        response = jsonify(body)
    else:
        response = Response(
            render_template("error.html", error=error.error, description=body["error_description"])
        )
    response.status_code = 400
    return response


def validate_grant(user: User | None) -> Any:
    """Authlib's validation of the authorization request; raises ``OAuth2Error``."""
    try:
        return authorization.get_consent_grant(end_user=user)
    except UnsupportedResponseTypeError as error:
        if request.values.get("response_type"):
            raise
        # RFC 6749 §4.1.2.1: a missing parameter is invalid_request (Authlib says
        # unsupported_response_type). Same validated redirect URI (or none) and state.
        raise InvalidRequestError(
            "Missing 'response_type' parameter.",
            state=error.state,
            redirect_uri=error.redirect_uri,
        ) from error
    except ValueError as exc:
        # Authlib echoes a refused redirect_uri / response_type in the error description and
        # raises ValueError when that value holds characters RFC 6749 forbids there
        # (backslash, '"', non-ASCII, controls). The request was being refused anyway: an
        # error page here (never a redirect), not a 500.
        if "forbidden characters" not in str(exc):
            raise
        raise InvalidRequestError(
            "The request contains characters that are not allowed in its parameters."
        ) from exc


def finish(grant: Any, user: User | None, status: int = 302) -> Response:
    """Issue the code or token (``user``) or ``access_denied`` (``None``) to the client."""
    response: Response = authorization.create_authorization_response(grant_user=user, grant=grant)
    if response.status_code == 302:
        response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def proceed(grant: Any, user: User, status: int) -> BaseResponse:
    """Signed in: straight to the client when consent exists, else to the consent page."""
    if has_consent(user.id, grant.client.client_id, grant.request.scope):
        return finish(grant, user, status)
    return redirect(with_query("login.grant", oauth_params()), 303)


def redirect_host(uri: str | None) -> str:
    parts = urlsplit(uri or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else (uri or "")
