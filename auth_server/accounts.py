"""Users: creation and password checks (a slow password hash, equal-time on unknown users)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import delete, func, select
from werkzeug.security import check_password_hash, generate_password_hash

from shared.errors import Conflict, InvalidCredentials, InvalidRequest, ObjectDoesNotExist

from . import revocations
from .config import DEFAULT_PASSWORD_HASH_METHOD
from .consent import forget_user_consents
from .extensions import db
from .models import AuthorizationCode, Consent, Token, User, utcnow
from .revocations import revoke_grants
from .rules import DEFAULT_ROLE, ROLES, scope_for_role
from .sessions import DISABLED, PASSWORD_CHANGED, delete_user_sessions, end_user_sessions


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


def normalise_username(username: str) -> str:
    """The one form of a username, for sign-in, throttling and storage: Unicode NFKC,
    case-folded, surrounding whitespace stripped and inner runs of it made one space
    ("  Alice\u00a0 SMITH " and "alice smith" are the same user)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())
    return " ".join(folded.split())


def validate_username(username: str) -> str:
    """The normalised username (what is stored), or ``InvalidRequest``."""
    username = normalise_username(username or "")
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


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequest(f"Unknown role {role!r}; use {' or '.join(ROLES)}.")
    return role


# --- OpenID Connect claims: name, email -------------------------------------------------

MAX_NAME = 200
MAX_EMAIL = 254  # RFC 5321's limit on a forward path
# A reasonable address, not RFC 5322's whole grammar: one @, a dot in the domain, no spaces,
# no characters that have no business in an address shown to apps.
EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f\"<>()\[\],;:\\]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def validate_name(name: str | None) -> str | None:
    """The display name as stored (whitespace runs made one space), ``None`` for none."""
    name = " ".join((name or "").split())
    if not name:
        return None
    if len(name) > MAX_NAME:
        raise InvalidRequest(f"The name is longer than {MAX_NAME} characters.")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidRequest("The name contains control characters.")
    return name


def validate_email(email: str | None) -> str | None:
    """The email address as stored (the domain lower-cased), ``None`` for none."""
    email = (email or "").strip()
    if not email:
        return None
    if len(email) > MAX_EMAIL:
        raise InvalidRequest(f"The email address is longer than {MAX_EMAIL} characters.")
    if not EMAIL.fullmatch(email):
        raise InvalidRequest(f"{email!r} is not an email address (name@example.com).")
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def create_user(
    username: str,
    password: str,
    role: str = DEFAULT_ROLE,
    name: str | None = None,
    email: str | None = None,
    email_verified: bool = False,
) -> User:
    username = validate_username(username)
    validate_password(password)
    validate_role(role)
    name, email = validate_name(name), validate_email(email)
    if db.session.scalar(select(User).where(User.username == username)) is not None:
        raise Conflict(f"The username {username!r} is taken.")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        name=name,
        email=email,
        email_verified=bool(email and email_verified),
    )
    db.session.add(user)
    db.session.commit()
    return user


def set_profile(
    user: User,
    name: str | None = None,
    email: str | None = None,
    email_verified: bool | None = None,
) -> User:
    """Change the user's name and email (``None``: keep; ``""``: remove). A new address is
    unverified unless ``email_verified`` says otherwise; without an address nothing is
    verified. Apps see the change in userinfo at once, in ID tokens issued from now on."""
    if name is not None:
        user.name = validate_name(name)
    if email is not None:
        new = validate_email(email)
        if new != user.email:
            user.email_verified = False
        user.email = new
    if email_verified is not None:
        if email_verified and not user.email:
            raise InvalidRequest("There is no email address to mark verified.")
        user.email_verified = email_verified
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
        user = _lookup(username)
    if user is None:
        check_password_hash(_dummy_hash(), password or "")
        raise InvalidCredentials()
    if not check_password_hash(user.password_hash, password or ""):
        raise InvalidCredentials()
    if user.is_disabled:  # said only to whoever knows the password
        raise AccountDisabled()
    return user


def _lookup(username: str) -> User | None:
    """The user a typed username names: by its normalised form, or, for a row created
    before usernames were normalised and left as it was (its normalised form was taken;
    see migration 3b5e551015e2), by the exact name as typed, which then wins."""
    typed = username.strip()
    key = normalise_username(username)
    if len(key) > MAX_USERNAME:
        return None
    found = {
        user.username: user
        for user in db.session.scalars(select(User).where(User.username.in_({typed, key})))
    }
    return found.get(typed) or found.get(key)


# --- operators (`auth-server users …`) ---------------------------------------------------


def find_user(username: str) -> User:
    """The user named ``username``, or ``ObjectDoesNotExist``."""
    user = None
    if username and len(username) <= MAX_USERNAME and "\x00" not in username:
        user = _lookup(username)
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
        "role": user.role,
        "disabled": user.is_disabled,
        "created_at": _iso(user.created_at),
    }
    if details:
        out["name"] = user.name
        out["email"] = user.email
        out["email_verified"] = user.email_verified
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

    Access tokens are self-contained JWTs: the revocation feed tells the call API to stop
    accepting the user's (within seconds). Runs in the caller's transaction.
    """
    # Codes first: deleting one waits for a redemption in flight (it holds the code's row
    # lock), so the grant it creates is committed before the grants are looked up below.
    db.session.execute(delete(AuthorizationCode).where(AuthorizationCode.user_id == user_id))
    revoke_grants(Token.user_id == user_id)  # each under its lock: a refresh in flight too
    revocations.record_subject(user_id)
    forget_user_consents(user_id)


def disable_user(username: str) -> User:
    """The user can no longer sign in, and loses every grant (tokens, codes, consents)."""
    user = find_user(username)
    if user.disabled_at is None:
        user.disabled_at = utcnow()
    revoke_user_grants(user.id)
    end_user_sessions(user.id, DISABLED)
    db.session.commit()
    return user


def enable_user(username: str) -> User:
    """The user can sign in again (revoked grants stay revoked)."""
    user = find_user(username)
    user.disabled_at = None
    db.session.commit()
    return user


def set_role(username: str, role: str) -> User:
    """Give USERNAME ``role``. A demotion takes effect at once: every grant (token family)
    of the user with a token that carries a scope the new role does not allow is revoked
    (refresh tokens refused, the access tokens reported inactive and, through the revocation
    feed, refused by the call API), such unused codes are deleted and remembered consents
    narrowed, so the apps sign the user in again and get what the new role allows. Runs in
    one transaction."""
    user = find_user(username)
    validate_role(role)
    user.role = role
    # Codes first (see revoke_user_grants): a redemption in flight commits its grant before
    # the grants are looked up.
    for code in db.session.scalars(
        select(AuthorizationCode).where(AuthorizationCode.user_id == user.id)
    ):
        if scope_for_role(code.scope, role) != _normal(code.scope):
            db.session.delete(code)
    db.session.flush()
    allowed = {
        token.scope
        for token in db.session.scalars(
            select(Token).where(Token.user_id == user.id, Token.revoked_at.is_(None))
        )
        if scope_for_role(token.scope, role) == _normal(token.scope)
    }
    revoke_grants(Token.user_id == user.id, Token.scope.not_in(allowed))
    for consent in db.session.scalars(select(Consent).where(Consent.user_id == user.id)):
        consent.scope = scope_for_role(consent.scope, role)
        if not consent.scope:
            db.session.delete(consent)
    db.session.commit()
    return user


def _normal(scope: str | None) -> str:
    return " ".join(dict.fromkeys((scope or "").split()))


def set_password(username: str, password: str) -> User:
    user = find_user(username)
    validate_password(password)
    user.password_hash = hash_password(password)
    end_user_sessions(user.id, PASSWORD_CHANGED)  # a thief's copy of a session ends too
    db.session.commit()
    return user


def delete_user(username: str) -> None:
    """Delete the user with their tokens, codes and consents."""
    user = find_user(username)
    revoke_user_grants(user.id)
    delete_user_sessions(user.id)
    db.session.execute(delete(Token).where(Token.user_id == user.id))
    db.session.delete(user)
    db.session.commit()


# --- the operator console (views/console.py) ----------------------------------------------


def get_user(user_id: str) -> User:
    """The user with this id, or ``ObjectDoesNotExist`` (the console names users by id)."""
    valid = user_id and len(user_id) <= 36 and "\x00" not in user_id
    user = db.session.get(User, user_id) if valid else None
    if user is None:
        raise ObjectDoesNotExist("No such user.")
    return user


def search_users(query: str = "", page: int = 1, per_page: int = 50) -> tuple[list[User], int]:
    """One page of the users whose username contains ``query`` (normalised like a username,
    so case and spacing don't matter), by username; and how many match in all."""
    text = normalise_username(query.replace("\x00", ""))[:MAX_USERNAME]
    condition = User.username.contains(text, autoescape=True)
    total = db.session.scalar(select(func.count()).select_from(User).where(condition)) or 0
    users = db.session.scalars(
        select(User)
        .where(condition)
        .order_by(User.username)
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    )
    return list(users), total
