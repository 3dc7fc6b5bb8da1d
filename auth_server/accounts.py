"""Users: creation and password checks (a slow password hash, equal-time on unknown users)."""

from __future__ import annotations

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from shared.errors import Conflict, InvalidCredentials, InvalidRequest

from .extensions import db
from .models import User

# Checked against when the username is unknown, so both failures cost the same time.
_DUMMY_HASH = generate_password_hash("not-a-real-password")
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


def create_user(username: str, password: str) -> User:
    username = validate_username(username)
    if len(password) < 8:
        raise InvalidRequest("The password must be at least 8 characters long.")
    if len(password) > MAX_PASSWORD:
        raise InvalidRequest(f"The password is longer than {MAX_PASSWORD} characters.")
    if db.session.scalar(select(User).where(User.username == username)) is not None:
        raise Conflict(f"The username {username!r} is taken.")
    user = User(username=username, password_hash=generate_password_hash(password))
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
        check_password_hash(_DUMMY_HASH, password or "")
        raise InvalidCredentials()
    if not check_password_hash(user.password_hash, password or ""):
        raise InvalidCredentials()
    return user


def get_user(user_id: str | None) -> User | None:
    if not user_id:
        return None
    return db.session.get(User, user_id)
