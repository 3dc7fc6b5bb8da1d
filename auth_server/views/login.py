"""The original's login and grant pages (HTML, or JSON with ``Accept: application/json``)."""

from __future__ import annotations

import re

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from shared.errors import InvalidCredentials, InvalidRequest

from .. import accounts, devices, flow, oidc
from ..consent import remember_consent
from ..extensions import limiter

bp = Blueprint("login", __name__)

# Logging out of no session has nothing to protect (and a stale tab must still be able to).
CSRF_EXEMPT_WHEN_SIGNED_OUT = frozenset({"login.logout"})


@bp.before_request
def protect_forms() -> None:
    """Every unsafe request to these pages: a form body, carrying this session's CSRF token.

    The one home of the CSRF check (400 ``invalid_request``, JSON or the error page). A
    JSON body is refused first, saying which encoding the form takes, rather than as a
    stale form.
    """
    if request.method not in flow.UNSAFE_METHODS:
        return
    flow.require_form_body()
    if request.endpoint in CSRF_EXEMPT_WHEN_SIGNED_OUT and flow.current_user() is None:
        return
    flow.check_csrf()


# Where ``next`` may send a browser after sign-in: a path on this server, with only the
# characters a path and query need. No scheme, no host, no "//" or "/\\" start (browsers
# read both as another host), no backslash, space, control character or fragment anywhere
# (browsers drop tabs and newlines, so "/\t/evil.example" would become "//evil.example").
SAFE_NEXT = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]{0,499}")


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a path on this server (see :data:`SAFE_NEXT`), else ``None``:
    the login form never redirects anywhere else (no open redirect)."""
    if value and SAFE_NEXT.fullmatch(value):
        return value
    return None


def _failed(response: Response) -> bool:
    return response.status_code == 401


def _login_username() -> str:
    return accounts.normalise_username(request.form.get("username") or "")[:200]


def _username_key() -> str:
    return "login-user:" + _login_username()


def _device_key() -> str:
    return "login-device:" + (devices.known_device(_login_username()) or "")


def _known_device() -> bool:
    """This browser signed in as this username before (a valid device cookie for it)."""
    return devices.known_device(_login_username()) is not None


def _unknown_device() -> bool:
    return not _known_device()


def _page(template: str, status: int = 200, **context: object) -> Response:
    response = Response(render_template(template, **context), status=status)
    return response


def _login_page(
    params: dict[str, str],
    client: object,
    error: InvalidCredentials | None,
    status: int,
) -> Response:
    if flow.wants_json():
        body: dict[str, object] = {**params, "csrf_token": flow.csrf_token()}
        if client is not None:
            body["client_name"] = client.client_name  # type: ignore[attr-defined]
        if error:
            body.update(error=error.error, error_description=error.description)
        response = jsonify(body)
        response.status_code = status
        return response
    next_url = None if params.get("client_id") else safe_next(request.values.get("next"))
    return _page(
        "login.html",
        status,
        params={**params, "next": next_url} if next_url else params,
        client=client,
        error=error.description if error else None,
        username=request.form.get("username"),
        csrf_token=flow.csrf_token(),
    )


@bp.route("/auth/login", methods=["GET"])
def login_form() -> BaseResponse:
    """The login form (or its parameters as JSON); signed-in users go on to consent."""
    return _login(None)


@bp.route("/auth/login", methods=["POST"], endpoint="login")
@limiter.limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_IP"],
    deduct_when=_failed,
    exempt_when=_known_device,  # the owner behind a shared address (NAT) is not locked out
    scope="login-ip",
)
@limiter.limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_USERNAME"],
    key_func=_username_key,
    deduct_when=_failed,
    exempt_when=_known_device,
    scope="login-user",
)
@limiter.limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_DEVICE"],
    key_func=_device_key,
    deduct_when=_failed,
    exempt_when=_unknown_device,
    scope="login-device",
)
def login_submit() -> BaseResponse:
    """Check the password (the CSRF token is checked first), then continue the OAuth flow.

    Failures are throttled per client address, and per username for unknown browsers or
    per device for a browser holding this user's device cookie (devices.py): guessing from
    anywhere cannot lock the owner's own browser out.
    """
    return _login(request.form.get("username", ""))


def _login(username: str | None) -> BaseResponse:
    """Sign in (``username`` given: the form was posted), then go on: to the authorization
    request's consent or client when it came with one, else to ``next`` when that is a
    path on this server (``/account`` sends signed-out users here with it)."""
    params = flow.oauth_params()
    user = flow.current_user()
    grant = None
    if params:
        try:
            grant = flow.validate_grant(user)
        except OAuth2Error as error:
            return flow.oauth_error(error)
    if username is not None:
        try:
            user = accounts.authenticate(username, request.form.get("password", ""))
        except InvalidCredentials as exc:
            return _login_page(params, grant.client if grant else None, exc, 401)
        flow.login_user(user)
        devices.remember_device(user.username)
    if user is not None and grant is not None:
        if username is None and flow.must_sign_in(grant):  # prompt=login, max_age
            return _login_page(params, grant.client, None, 200)
        return flow.proceed(grant, user, status=303)
    next_url = None if params else safe_next(request.values.get("next"))
    if user is not None and next_url and not flow.wants_json():
        return redirect(next_url, 303 if username is not None else 302)
    if user is not None and username is not None:
        if flow.wants_json():
            return jsonify(status="signed_in", username=user.username)
        return _page("message.html", title="Signed in", message=f"Signed in as {user.username}.")
    return _login_page(params, grant.client if grant else None, None, 200)


@bp.route("/auth/grant", methods=["GET", "POST"])
def grant() -> BaseResponse:
    """The consent page; POST ``grant=true`` issues the code or token, ``false`` refuses."""
    params = flow.oauth_params()
    found = flow.signed_in_grant()
    if not isinstance(found, tuple):
        return found
    user, grant = found
    client = grant.client
    if "none" in oidc.prompts(grant):  # never a page: the client asked for none
        return flow.oauth_error(oidc.consent_required(grant))
    if request.method == "POST":
        decision = request.form.get("grant", "")
        if decision == "true":
            remember_consent(user.id, client.client_id, grant.request.scope)
            return flow.finish(grant, user, 302)
        if decision == "false":
            return flow.finish(grant, None, 302)
        raise InvalidRequest("Send grant=true to accept or grant=false to refuse.")
    if flow.wants_json():
        return jsonify(
            {
                **params,
                "client_name": client.client_name,
                "scope": grant.request.scope,
                "username": user.username,
                "csrf_token": flow.csrf_token(),
            }
        )
    return _page(
        "grant.html",
        params=params,
        client=client,
        user=user,
        scopes=(grant.request.scope or "").split(),
        scope_text=flow.SCOPE_TEXT,
        redirect_host=flow.redirect_host(grant.redirect_uri),
        csrf_token=flow.csrf_token(),
    )


@bp.route("/auth/logout", methods=["POST"])
def logout() -> BaseResponse:
    """End the login session (CSRF-checked when someone is signed in); ``everywhere=true``
    ends every session of the user, in every browser.

    From the consent page ("Not you?") the OAuth parameters come along, and the browser goes
    back to the login form of the same authorization request.
    """
    everywhere = request.form.get("everywhere", "") == "true"
    ended = flow.logout_user(everywhere=everywhere)
    params = flow.oauth_params()
    if params.get("client_id") and not flow.wants_json():
        return redirect(flow.with_query("login.login", params), 303)
    if flow.wants_json():
        if everywhere:
            return jsonify(status="signed_out", everywhere=True, sessions_ended=ended)
        return jsonify(status="signed_out")
    if everywhere:
        ended_text = f"{ended} session{'' if ended == 1 else 's'} ended"
        message = f"You are signed out in every browser ({ended_text})."
        return _page("message.html", title="Signed out", message=message)
    return _page("message.html", title="Signed out", message="You are signed out.")
