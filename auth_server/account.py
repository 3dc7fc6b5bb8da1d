"""The rules of a user's account page (``/account``), as plain functions over the session.

A signed-in user sees and manages only their own things: the apps they allowed (their
consents), their login sessions, their password. Everything is looked up by the signed-in
user's id together with what the form names, so naming another user's session or an app
the user never allowed is as unknown as a missing one (``ObjectDoesNotExist``, a 404).

Removing an app is :func:`consent.forget_consent`: consent withdrawn, the app's grants
for the user revoked (refresh tokens refused at once, access tokens at the call API
within the revocation feed's delay) and, when the user asks, an ``end_calls`` feed entry
that has the call API hang up the app's live calls.

Changing the password ends the user's other sessions and keeps the apps' access, like
``auth-server users set-password`` (``accounts.set_password``): a new password is not
evidence that an app misbehaved, and the account page lists the apps with a button to
remove any of them. The browser that changed it stays signed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from werkzeug.security import check_password_hash

from shared.errors import ClickCallError, ObjectDoesNotExist

from . import accounts, sessions
from .consent import forget_consent
from .extensions import db
from .models import Client, Consent, User


@dataclass(frozen=True)
class AppAccess:
    """An app the user allowed, as the account page lists it."""

    client_id: str
    name: str
    scopes: list[str]
    granted_at: datetime
    last_used_at: datetime | None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite gives back naive datetimes (stored as UTC)
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _access(consent: Consent, client: Client) -> AppAccess:
    granted_at = _utc(consent.granted_at)
    assert granted_at is not None
    return AppAccess(
        client_id=client.client_id,
        name=str(client.client_name or client.client_id),
        scopes=(consent.scope or "").split(),
        granted_at=granted_at,
        last_used_at=_utc(consent.last_used_at),
    )


def apps_with_access(user_id: str) -> list[AppAccess]:
    """The apps the user allowed, by name."""
    rows = db.session.execute(
        select(Consent, Client)
        .join(Client, Client.client_id == Consent.client_id)
        .where(Consent.user_id == user_id)
    ).all()
    apps = [_access(consent, client) for consent, client in rows]
    return sorted(apps, key=lambda app: (app.name.casefold(), app.client_id))


def app_with_access(user_id: str, client_id: str) -> AppAccess:
    """One app the user allowed, or ``ObjectDoesNotExist``."""
    row = None
    if client_id and len(client_id) <= 64 and "\x00" not in client_id:
        row = db.session.execute(
            select(Consent, Client)
            .join(Client, Client.client_id == Consent.client_id)
            .where(Consent.user_id == user_id, Consent.client_id == client_id)
        ).first()
    if row is None:
        raise ObjectDoesNotExist("This app has no access to your account.")
    return _access(*row)


def revoke_app(user_id: str, client_id: str, end_calls: bool = False) -> AppAccess:
    """Remove the app's access (see the module docstring); what was removed."""
    app = app_with_access(user_id, client_id)
    forget_consent(user_id, client_id, end_calls=end_calls)
    return app


def user_session(user_id: str, session_id: int, current_token: str | None) -> dict[str, Any]:
    """One of the user's live sessions (as ``sessions.list_sessions`` describes them), or
    ``ObjectDoesNotExist``: another user's session is as unknown as an ended one."""
    for row in sessions.list_sessions(user_id, current_token):
        if row["id"] == session_id:
            return row
    raise ObjectDoesNotExist("This session has ended, or is not yours.")


def end_user_session(user_id: str, session_id: int) -> None:
    """Sign out one of the user's own sessions, or ``ObjectDoesNotExist``."""
    if not sessions.end_session_by_id(user_id, session_id, sessions.LOGOUT):
        raise ObjectDoesNotExist("This session has ended, or is not yours.")


class PasswordProblem(ClickCallError):
    """A password change refused; ``field`` is the form field to show it next to."""

    status = 400
    error = "invalid_request"

    def __init__(self, field: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.field = field
        self.status = status


def change_password(
    user: User, current: str, new: str, confirm: str, keep_token: str | None
) -> int:
    """Set ``new`` as the user's password when ``current`` is right; every other session of
    the user ends (``keep_token``'s stays). Returns how many ended. Grants stay (see the
    module docstring). Raises :class:`PasswordProblem` (401 for a wrong current password,
    so it can be throttled like a failed sign-in; 400 otherwise)."""
    current = current or ""
    if not current:
        raise PasswordProblem("current_password", "Enter your current password.")
    if len(current) > accounts.MAX_PASSWORD or not check_password_hash(user.password_hash, current):
        raise PasswordProblem("current_password", "The current password is not right.", status=401)
    try:
        accounts.validate_password(new or "")
    except ClickCallError as exc:
        raise PasswordProblem("new_password", exc.description) from None
    if new != confirm:
        raise PasswordProblem("confirm_password", "The two new passwords are not the same.")
    if new == current:
        raise PasswordProblem("new_password", "The new password is the same as the current one.")
    user.password_hash = accounts.hash_password(new)
    ended = sessions.end_other_sessions(user.id, keep_token, sessions.PASSWORD_CHANGED)
    db.session.commit()
    return ended
