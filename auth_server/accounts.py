"""Users: creation and password checks (a slow password hash, equal-time on unknown users)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import delete, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from shared.errors import Conflict, InvalidCredentials, InvalidRequest, ObjectDoesNotExist

from .config import DEFAULT_PASSWORD_HASH_METHOD
from .consent import forget_user_consents
from .extensions import db
from .models import AuthorizationCode, Consent, Token, User, utcnow


class AccountDisabled(InvalidCredentials):
    """The password is right but an operator disabled the account."""

    error = "account_disabled"
    description = "This account is disabled; ask the operator to enable it."


# Checked against when the username is unknown, so both failures cost the same time: one
# dummy hash per AUTH_PASSWORD_HASH_METHOD, the default's made at import.
_DUMMY_PASSWORD = "not-a-real-password"
_DUMMY_HASHES = {
    DEFAULT_PASSWORD_HASH_METHOD: generate_password_hash(
        _DUMMY_PASSWORD, DEFAULT_PASSWORD_HASH_METHOD
    )
}
MAX_USERNAME = 150
MAX_PASSWORD = 1024


def validate_username(username: str) -> str:
    username = (username or "").strip()
    if not username:
        raise InvalidRequest("The username must not be empty.")
    if len(username) > MAX_USERNAME:
        raise InvalidRequest(f"The username is longer than {MAX_USERNAME} characters.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in username):
        raise InvalidRequest("The username contains control characters.")
    return username


def validate_password(password: str) -> str:
    if len(password) < 8:
        raise InvalidRequest("The password must be at least 8 characters long.")
    if len(password) > MAX_PASSWORD:
        raise InvalidRequest(f"The password is longer than {MAX_PASSWORD} characters.")
    return password


def _hash_method() -> str:
    return str(current_app.config["AUTH_PASSWORD_HASH_METHOD"])


def hash_password(password: str) -> str:
    """The stored form of ``password``, by ``AUTH_PASSWORD_HASH_METHOD``.

    ``check_password_hash`` reads the method from each stored hash, so hashes made under an
    earlier setting keep working."""
    return generate_password_hash(password, _hash_method())


def _dummy_hash() -> str:
    method = _hash_method()
    if method not in _DUMMY_HASHES:
        _DUMMY_HASHES[method] = generate_password_hash(_DUMMY_PASSWORD, method)
    return _DUMMY_HASHES[method]


def create_user(username: str, password: str) -> User:
    username = validate_username(username)
    validate_password(password)
    if db.session.scalar(select(User).where(User.username == username)) is not None:
        raise Conflict(f"The username {username!r} is taken.")
    user = User(username=username, password_hash=hash_password(password))
    db.session.add(user)
    db.session.commit()
    return user


def authenticate(username: str, password: str) -> User:
    """The user, or ``InvalidCredentials`` with one message for every failure."""
    user = None
    # A username with NUL cannot exist (validate_username) and PostgreSQL refuses it (a 500).
    if (
        username
        and len(username) <= MAX_USERNAME
        and "\x00" not in username
        and len(password or "") <= MAX_PASSWORD
    ):
        user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        check_password_hash(_dummy_hash(), password or "")
        raise InvalidCredentials()
    if not check_password_hash(user.password_hash, password or ""):
        raise InvalidCredentials()
    if user.is_disabled:  # said only to whoever knows the password
        raise AccountDisabled()
    return user


def get_user(user_id: str | None) -> User | None:
    """The signed-in user of a session; ``None`` once the user is disabled or deleted."""
    if not user_id:
        return None
    user = db.session.get(User, user_id)
    return None if user is None or user.is_disabled else user


# --- operators (`auth-server users …`) ---------------------------------------------------


def find_user(username: str) -> User:
    """The user named ``username``, or ``ObjectDoesNotExist``."""
    user = None
    if username and len(username) <= MAX_USERNAME and "\x00" not in username:
        user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise ObjectDoesNotExist(f"No user named {username!r}.")
    return user


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.username)))


def describe_user(user: User, details: bool = False) -> dict[str, object]:
    """What an operator sees of a user (never the password hash)."""
    out: dict[str, object] = {
        "id": user.id,
        "username": user.username,
        "disabled": user.is_disabled,
        "created_at": _iso(user.created_at),
    }
    if details:
        out["disabled_at"] = _iso(user.disabled_at)
        out["authorized_clients"] = list(
            db.session.scalars(
                select(Consent.client_id)
                .where(Consent.user_id == user.id)
                .order_by(Consent.client_id)
            )
        )
    return out


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite gives back naive datetimes (stored as UTC)
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def revoke_user_grants(user_id: str) -> None:
    """Revoke what the server holds for the user: refresh tokens (and the access tokens'
    records, so introspection reports them inactive), unused authorization codes, consents.

    Access tokens are self-contained JWTs: resource servers accept one until it expires.
    Runs in the caller's transaction.
    """
    db.session.execute(
        update(Token)
        .where(Token.user_id == user_id, Token.revoked_at.is_(None))
        .values(revoked_at=int(time.time()))
    )
    db.session.execute(delete(AuthorizationCode).where(AuthorizationCode.user_id == user_id))
    forget_user_consents(user_id)


def disable_user(username: str) -> User:
    """The user can no longer sign in, and loses every grant (tokens, codes, consents)."""
    user = find_user(username)
    if user.disabled_at is None:
        user.disabled_at = utcnow()
    revoke_user_grants(user.id)
    db.session.commit()
    return user


def enable_user(username: str) -> User:
    """The user can sign in again (revoked grants stay revoked)."""
    user = find_user(username)
    user.disabled_at = None
    db.session.commit()
    return user


def set_password(username: str, password: str) -> User:
    user = find_user(username)
    validate_password(password)
    user.password_hash = hash_password(password)
    db.session.commit()
    return user


def delete_user(username: str) -> None:
    """Delete the user with their tokens, codes and consents."""
    user = find_user(username)
    revoke_user_grants(user.id)
    db.session.execute(delete(Token).where(Token.user_id == user.id))
    db.session.delete(user)
    db.session.commit()
