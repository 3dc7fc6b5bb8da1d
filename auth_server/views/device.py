"""The /device page (RFC 8628 §3.3): the user types the code their device shows, sees the
consent as for any app, and approves or denies. Works without JavaScript; JSON with
``Accept: application/json``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from shared.errors import InvalidRequest

from .. import device_flow, flow
from ..extensions import db, limiter
from ..models import Client, DeviceCode, User
from .login import protect_forms

bp = Blueprint("device", __name__)
bp.before_request(protect_forms)  # the one CSRF check, as for the login and consent forms

NOT_VALID = "That code is not valid or has expired. Check the code your device shows."


@bp.before_request
def require_sign_in() -> BaseResponse | None:
    """Signed out: to the login form, which comes back here with the code typed so far."""
    if flow.current_user() is not None:
        return None
    code = device_flow.normalise_user_code(request.values.get("user_code"))
    back = flow.with_query(
        "device.page", {"user_code": device_flow.display_user_code(code)} if code else {}
    )
    target = flow.with_query("login.login", {"next": back})
    return redirect(target, 302 if request.method in ("GET", "HEAD") else 303)


def _user() -> User:
    user = flow.current_user()
    assert user is not None  # require_sign_in
    return user


def _user_key() -> str:
    return "device-user:" + _user().id


def _wrong_code(response: Response) -> bool:
    return response.status_code == 400


@bp.get("/device")
def page() -> BaseResponse:
    """The code form, prefilled from ``verification_uri_complete`` (``?user_code=``): the
    user still checks it against their device and submits it."""
    code = device_flow.normalise_user_code(request.args.get("user_code"))
    shown = device_flow.display_user_code(code) if code else ""
    if flow.wants_json():
        return jsonify(user_code=shown, csrf_token=flow.csrf_token())
    return _code_form(shown, None, 200)


@bp.post("/device")
@limiter.limit(
    lambda: current_app.config["AUTH_DEVICE_LIMIT_PER_IP"],
    deduct_when=_wrong_code,
    scope="device-code-ip",
)
@limiter.limit(
    lambda: current_app.config["AUTH_DEVICE_LIMIT_PER_USER"],
    key_func=_user_key,
    deduct_when=_wrong_code,
    scope="device-code-user",
)
def submit() -> BaseResponse:
    """The typed code: the consent for it (no ``decision``), or the decision
    (``decision=approve`` or ``deny``). A wrong code is a 400 and spends the rate limits
    (per client address and per user): guessing someone else's code is throttled."""
    user = _user()
    typed = request.form.get("user_code", "")
    row = device_flow.find_pending(typed)
    if row is None:
        return _not_valid(typed)
    client = db.session.scalar(select(Client).where(Client.client_id == row.client_id))
    decision = request.form.get("decision")
    scope = device_flow.scope_for(row, user)
    if decision is None and scope:
        return _consent(row, client, user, scope)
    if decision not in (None, "approve", "deny"):
        raise InvalidRequest("Send decision=approve to approve or decision=deny to deny.")
    approve = decision == "approve"
    if not device_flow.decide(row, user, approve):
        return _not_valid(typed)
    outcome = "approved" if approve and scope else ("denied" if scope else "no_scope")
    return _done(outcome, client, user, row)


def _code_form(user_code: str, error: str | None, status: int) -> Response:
    body = render_template(
        "device.html", user_code=user_code, error=error, csrf_token=flow.csrf_token()
    )
    return Response(body, status=status)


def _not_valid(typed: str) -> Response:
    if flow.wants_json():
        response = jsonify(error="invalid_request", error_description=NOT_VALID)
        response.status_code = 400
        return response
    return _code_form(typed[:20], NOT_VALID, 400)


def _consent(row: DeviceCode, client: Client | None, user: User, scope: str) -> Response:
    shown = device_flow.display_user_code(row.user_code)
    name = client.client_name if client is not None else row.client_id
    if flow.wants_json():
        return jsonify(
            user_code=shown,
            client_name=name,
            scope=scope,
            username=user.username,
            csrf_token=flow.csrf_token(),
        )
    body = render_template(
        "device_consent.html",
        user_code=shown,
        client_name=name,
        user=user,
        scopes=scope.split(),
        scope_text=flow.SCOPE_TEXT,
        csrf_token=flow.csrf_token(),
    )
    return Response(body)


DONE = {
    "approved": ("Device connected", "{app} can now use your account. Return to your device."),
    "denied": ("Access denied", "{app} was not given access. You can close this page."),
    "no_scope": (
        "Access not possible",
        "Your account's role allows none of what {app} asks for, so it was not given access.",
    ),
}


def _done(outcome: str, client: Client | None, user: User, row: DeviceCode) -> Response:
    name = client.client_name if client is not None else row.client_id
    title, text = DONE[outcome]
    message = text.format(app=name)
    if flow.wants_json():
        return jsonify(status=outcome, client_name=name, message=message)
    body = render_template("device_done.html", title=title, message=message, outcome=outcome)
    return Response(body)
