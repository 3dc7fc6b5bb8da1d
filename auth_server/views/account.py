"""The user's account page (``/account``): apps with access, sessions, password.

Signed-in users only (others are sent to the login form, and back here after it). Every
change is a POST carrying the session's CSRF token (the login blueprint's check); removing
an app and signing out go through a confirmation page first, and changing the password asks
for the current one. The rules are in ``auth_server/account.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from .. import account, flow, sessions
from ..extensions import limiter
from ..models import User
from .login import protect_forms

bp = Blueprint("account", __name__, url_prefix="/account")
bp.before_request(protect_forms)  # the one CSRF check, as for the login and consent forms


@bp.before_request
def require_sign_in() -> BaseResponse | None:
    """Signed out: to the login form, which comes back to the account page."""
    if flow.current_user() is not None:
        return None
    target = url_for("login.login", next=url_for("account.overview"))
    return redirect(target, 302 if request.method in ("GET", "HEAD") else 303)


def _user() -> User:
    user = flow.current_user()
    assert user is not None  # require_sign_in
    return user


def _token() -> str | None:
    token = session.get("sid")
    return token if isinstance(token, str) else None


def when(value: datetime | int | None) -> str:
    """A time as the pages show it (UTC, to the minute); ``never`` for none."""
    if value is None:
        return "never"
    if isinstance(value, int):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | int) -> str:
    if isinstance(value, int):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _render(template: str, status: int = 200, **context: Any) -> Response:
    return Response(
        render_template(template, when=when, iso=iso, csrf_token=flow.csrf_token(), **context),
        status=status,
    )


def _overview(
    status: int = 200, errors: dict[str, str] | None = None, messages: list[str] | None = None
) -> Response:
    user = _user()
    return _render(
        "account.html",
        status,
        user=user,
        apps=account.apps_with_access(user.id),
        sessions=sessions.list_sessions(user.id, _token()),
        scope_text=flow.SCOPE_TEXT,
        messages=messages if messages is not None else get_flashed_messages(),
        errors=errors or {},
    )


def _back(message: str) -> BaseResponse:
    flash(message)
    return redirect(url_for("account.overview"), 303)


def _signed_out(message: str) -> Response:
    return _render("message.html", title="Signed out", message=message)


@bp.get("")
def overview() -> Response:
    """The account page."""
    return _overview()


@bp.get("/apps/revoke")
def revoke_form() -> Response:
    """Confirm removing an app's access (``?client_id=``), with the choice to hang up its
    live calls."""
    app = account.app_with_access(_user().id, request.args.get("client_id", ""))
    return _render("account_revoke.html", app=app, scope_text=flow.SCOPE_TEXT)


@bp.post("/apps/revoke")
def revoke() -> BaseResponse:
    """Remove the app's access; ``end_calls=yes`` also hangs up its live calls."""
    end_calls = request.form.get("end_calls") == "yes"
    app = account.revoke_app(_user().id, request.form.get("client_id", ""), end_calls)
    calls = " Its live calls are being hung up." if end_calls else ""
    return _back(f"{app.name} no longer has access to your account.{calls}")


@bp.get("/sessions/<int:session_id>/sign-out")
def sign_out_form(session_id: int) -> Response:
    """Confirm signing out one of the user's sessions."""
    row = account.user_session(_user().id, session_id, _token())
    return _render("account_sign_out.html", row=row)


@bp.post("/sessions/<int:session_id>/sign-out")
def sign_out(session_id: int) -> BaseResponse:
    """Sign out one of the user's sessions (this browser's too: then it is signed out)."""
    user = _user()
    current = account.user_session(user.id, session_id, _token())["current"]
    account.end_user_session(user.id, session_id)
    if current:
        flow.logout_user()
        return _signed_out("You are signed out.")
    return _back("That session is signed out.")


@bp.get("/sign-out-everywhere")
def sign_out_everywhere_form() -> Response:
    """Confirm signing out every session, this one included."""
    user = _user()
    return _render("account_sign_out.html", row=None, count=len(sessions.list_sessions(user.id)))


@bp.post("/sign-out-everywhere")
def sign_out_everywhere() -> Response:
    """Sign out every session of the user, in every browser (this one included)."""
    ended = flow.logout_user(everywhere=True)
    ended_text = f"{ended} session{'' if ended == 1 else 's'} ended"
    return _signed_out(f"You are signed out in every browser ({ended_text}).")


def _wrong_password(response: Response) -> bool:
    return response.status_code == 401


def _user_key() -> str:
    user = flow.current_user()
    return "password-change:" + (user.id if user is not None else "")


@bp.post("/password")
@limiter.limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_USERNAME"],
    key_func=_user_key,
    deduct_when=_wrong_password,
    scope="password-change",
)
def change_password() -> BaseResponse:
    """Change the password (the current one required); the other sessions end."""
    form = request.form
    try:
        ended = account.change_password(
            _user(),
            form.get("current_password", ""),
            form.get("new_password", ""),
            form.get("confirm_password", ""),
            _token(),
        )
    except account.PasswordProblem as problem:
        return _overview(problem.status, errors={problem.field: problem.description}, messages=[])
    others = f"{ended} other session{'' if ended == 1 else 's'} signed out"
    return _back(f"Your password is changed ({others}).")
