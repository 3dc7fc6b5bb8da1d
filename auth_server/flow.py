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

from . import dpop, oidc, par, sessions
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
    # OpenID Connect
    "nonce",
    "prompt",
    "max_age",
    "response_mode",
    # PAR (RFC 9126): a pushed request stands for all of the above; DPoP code binding
    "request_uri",
    "dpop_jkt",
)
SCOPE_TEXT = {
    "call": "place, end and read phone calls on your behalf",
    "admin": "administer every user's calls",
    "openid": "know who you are (your account's identifier) and that you signed in",
    "profile": "see your name and username",
    "email": "see your email address",
}


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes["application/json"] > 0


def oauth_params() -> dict[str, str]:
    """The OAuth parameters of this request, to carry through login and consent."""
    params = {k: request.values[k] for k in OAUTH_PARAMS if request.values.get(k) is not None}
    return par.carried(params)


_USER = "clickcall.user"  # this request's signed-in user, once looked up


def current_user() -> User | None:
    """The signed-in user, from the server-side session row the cookie's ``sid`` names
    (sessions.py: ended, idle or expired sessions and disabled users sign nobody in).

    The cookie's ``uid`` must match the row's user; a cookie whose session is over loses
    both, so the browser is plainly signed out. Looked up once per request.
    """
    if _USER in request.environ:
        return request.environ[_USER]  # type: ignore[no-any-return]
    token = session.get("sid")
    user = sessions.session_user(token) if isinstance(token, str) else None
    if user is not None and session.get("uid") != user.id:
        user = None
    if user is None and ("sid" in session or "uid" in session):
        session.pop("sid", None)
        session.pop("uid", None)
    request.environ[_USER] = user
    return user


def login_user(user: User) -> None:
    """Start a server-side session for ``user`` in a fresh cookie (no session fixation: a
    new session id and a new CSRF token; this browser's previous session ends)."""
    previous = session.get("sid")
    if isinstance(previous, str):
        sessions.end_session(previous, sessions.REPLACED)
    session.clear()
    session.permanent = True
    session["sid"] = sessions.start_session(
        user.id, user_agent=request.user_agent.string, ip=request.remote_addr
    )
    session["uid"] = user.id
    session["csrf"] = secrets.token_urlsafe(32)
    oidc.mark_reauthenticated(oauth_params())  # prompt=login / max_age: satisfied now
    request.environ[_USER] = user


def logout_user(everywhere: bool = False) -> int:
    """End this browser's session, or with ``everywhere`` every session of its user (the
    other browsers, and any copy of their cookies); how many sessions ended."""
    user = current_user()
    token = session.get("sid")
    ended = 0
    if everywhere and user is not None:
        ended = sessions.sign_out_everywhere(user.id)
    elif isinstance(token, str):
        ended = int(sessions.end_session(token, sessions.LOGOUT))
    session.clear()
    request.environ[_USER] = None
    return ended


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
    """Redirect only to a validated redirect URI (with ``iss``, RFC 9207); otherwise show
    the error here."""
    if error.redirect_uri:
        response: Response = authorization.handle_error_response(None, error)
        response.headers["Location"] = oidc.add_issuer(response.headers["Location"])
        response.headers["Cache-Control"] = "no-store"
        return response
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
    """Authlib's validation of the authorization request; raises ``OAuth2Error``.

    With a signed-in ``user`` the scope is narrowed to what their role allows (or
    ``invalid_scope``, redirected to the client, when nothing is left): the consent page,
    the remembered consent and what is issued all see only that."""
    par.prepare()  # a request_uri: the pushed request's parameters from here on
    try:
        grant = authorization.get_consent_grant(end_user=user)
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
    oidc.check_request(grant)
    dpop.check_authorization_request(grant)  # no bearer token for a client bound to DPoP
    if "none" in oidc.prompts(grant) and (user is None or oidc.must_sign_in(grant, oauth_params())):
        raise oidc.login_required(grant)
    if user is not None:
        grant.limit_scope_to_role(user, grant.redirect_uri)
    return grant


def must_sign_in(grant: Any) -> bool:
    """The signed-in user must sign in again first (``prompt=login``, ``max_age``)."""
    return oidc.must_sign_in(grant, oauth_params())


def finish(grant: Any, user: User | None, status: int = 302) -> Response:
    """Issue the code or token (``user``) or ``access_denied`` (``None``) to the client."""
    used = par.consume()  # a pushed request serves one authorization
    if used is not None:
        return oauth_error(used)
    response: Response = authorization.create_authorization_response(grant_user=user, grant=grant)
    oidc.forget_reauthentication()
    if response.status_code == 302:
        response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def proceed(grant: Any, user: User, status: int) -> BaseResponse:
    """Signed in: straight to the client when consent exists (and ``prompt=consent`` does
    not ask for the page anyway), else to the consent page (``prompt=none``:
    ``consent_required`` instead).

    The scope is first narrowed to what ``user``'s role allows (the grant may have been
    validated before the user signed in), so a remembered consent never covers more."""
    try:
        grant.limit_scope_to_role(user, grant.redirect_uri)
    except OAuth2Error as error:
        return oauth_error(error)
    asked = oidc.prompts(grant)
    if "consent" not in asked and has_consent(user.id, grant.client.client_id, grant.request.scope):
        return finish(grant, user, status)
    if "none" in asked:
        return oauth_error(oidc.consent_required(grant))
    return redirect(with_query("login.grant", oauth_params()), 303)


def redirect_host(uri: str | None) -> str:
    parts = urlsplit(uri or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else (uri or "")


def signed_in_grant() -> tuple[User, Any] | BaseResponse:
    """The validated authorization request and its signed-in user; or what to answer
    instead: the error page (never a redirect to an unvalidated URI) or the login form."""
    user = current_user()
    try:
        grant = validate_grant(user)
    except OAuth2Error as error:
        return oauth_error(error)
    if user is None or must_sign_in(grant):
        return redirect(with_query("login.login", oauth_params()), 302)
    return user, grant
