"""Login sessions kept on the server, as plain functions.

A browser that signs in gets a random session id in its (signed) session cookie; the
``login_sessions`` row keeps only the id's SHA-256, who signed in, when, from which browser
and address, and when it was last used. The cookie alone proves nothing: each request looks
the row up, so a session ends for every copy of its cookie when

- the user signs out (``end_session``), or signs out everywhere (``sign_out_everywhere``);
- the password changes, the user is disabled or deleted (``end_user_sessions``, called by
  ``accounts``);
- it has been idle longer than ``SESSION_IDLE_TIMEOUT`` or exists longer than
  ``SESSION_LIFETIME`` (the absolute lifetime), whatever the cookie says.

``last_seen_at`` is written at most once a minute per session (``TOUCH_INTERVAL``), not on
every request, so the idle timeout is exact to within a minute.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, or_, select, update

from .extensions import db
from .models import LoginSession, User, active_user

TOUCH_INTERVAL = 60

# Why a session ended (``login_sessions.end_reason``).
LOGOUT = "logout"
SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"
PASSWORD_CHANGED = "password_changed"
DISABLED = "disabled"
REPLACED = "replaced"  # the same browser signed in again
IDLE = "idle_timeout"
EXPIRED = "expired"


def now() -> int:
    """The clock (Unix seconds); tests replace it instead of sleeping."""
    return int(time.time())


def _seconds(value: Any) -> int:
    return int(value.total_seconds()) if isinstance(value, timedelta) else int(value)


def absolute_lifetime() -> int:
    """``SESSION_LIFETIME``: seconds a session lasts after sign-in, however busy."""
    return _seconds(current_app.config["PERMANENT_SESSION_LIFETIME"])


def idle_timeout() -> int:
    """``SESSION_IDLE_TIMEOUT``: seconds of inactivity after which a session ends."""
    return _seconds(current_app.config["SESSION_IDLE_TIMEOUT"])


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _text(value: str | None, size: int) -> str | None:
    """A header value as stored: at most ``size`` characters, no NUL (PostgreSQL refuses)."""
    return (value or "").replace("\x00", "")[:size] or None


def start_session(user_id: str, user_agent: str | None = None, ip: str | None = None) -> str:
    """A new session for ``user_id``; returns the id to put in the cookie (shown once).

    The user's dead sessions (ended or past their lifetime) are deleted on the way, so the
    table holds little more than the live ones.
    """
    t = now()
    db.session.execute(
        delete(LoginSession).where(
            LoginSession.user_id == user_id,
            or_(
                LoginSession.ended_at.is_not(None),
                LoginSession.created_at < t - absolute_lifetime(),
                LoginSession.last_seen_at < t - idle_timeout(),
            ),
        )
    )
    token = secrets.token_urlsafe(32)
    db.session.add(
        LoginSession(
            token_hash=_hash(token),
            user_id=user_id,
            created_at=t,
            last_seen_at=t,
            user_agent=_text(user_agent, 255),
            ip=_text(ip, 64),
        )
    )
    db.session.commit()
    return token


def expiry_reason(row: LoginSession, at: int) -> str | None:
    """Why ``row`` no longer signs anyone in at time ``at``; ``None`` while it is live."""
    if row.ended_at is not None:
        return row.end_reason or LOGOUT
    if at - row.created_at > absolute_lifetime():
        return EXPIRED
    if at - row.last_seen_at > idle_timeout():
        return IDLE
    return None


def _row(token: str | None) -> LoginSession | None:
    if not token or len(token) > 128:
        return None
    return db.session.scalar(select(LoginSession).where(LoginSession.token_hash == _hash(token)))


def session_user(token: str | None) -> User | None:
    """The user signed in by session id ``token``, or ``None`` (unknown, ended, idle,
    expired, or the user is disabled or gone). Records the use at most once a minute."""
    row = _row(token)
    if row is None:
        return None
    t = now()
    reason = expiry_reason(row, t)
    if reason is not None:
        if row.ended_at is None:  # timed out: record it once, for the session list
            _end(LoginSession.id == row.id, reason, t)
            db.session.commit()
        return None
    user = active_user(row.user_id)
    if user is None:
        return None
    if t - row.last_seen_at >= TOUCH_INTERVAL:
        db.session.execute(
            update(LoginSession)
            .where(LoginSession.id == row.id, LoginSession.ended_at.is_(None))
            .values(last_seen_at=t)
        )
        db.session.commit()
    return user


def session_auth_time(token: str | None) -> int | None:
    """When the user of the live session ``token`` signed in (OpenID Connect's
    ``auth_time``: a new sign-in starts a new session); ``None`` without one."""
    row = _row(token)
    if row is None or expiry_reason(row, now()) is not None:
        return None
    return row.created_at


def _end(condition: Any, reason: str, at: int | None = None) -> int:
    result = db.session.execute(
        update(LoginSession)
        .where(condition, LoginSession.ended_at.is_(None))
        .values(ended_at=now() if at is None else at, end_reason=reason)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def end_session(token: str | None, reason: str = LOGOUT) -> bool:
    """End the session with id ``token`` (every copy of its cookie); whether one was live."""
    if not token or len(token) > 128:
        return False
    ended = _end(LoginSession.token_hash == _hash(token), reason)
    db.session.commit()
    return ended > 0


def end_user_sessions(user_id: str, reason: str) -> int:
    """End every live session of the user; how many. Runs in the caller's transaction
    (``accounts`` calls it when the password changes or the user is disabled)."""
    return _end(LoginSession.user_id == user_id, reason)


def end_other_sessions(user_id: str, keep_token: str | None, reason: str) -> int:
    """End every live session of the user except the one of ``keep_token`` (the browser
    that changed the password stays signed in); how many. The caller's transaction."""
    condition = LoginSession.user_id == user_id
    if keep_token:
        condition = condition & (LoginSession.token_hash != _hash(keep_token))
    return _end(condition, reason)


def sign_out_everywhere(user_id: str) -> int:
    """ "Sign out everywhere": end every session of the user, in every browser; how many."""
    ended = end_user_sessions(user_id, SIGNED_OUT_EVERYWHERE)
    db.session.commit()
    return ended


def delete_user_sessions(user_id: str) -> None:
    """Forget the user's sessions (deleting the user). Runs in the caller's transaction."""
    db.session.execute(delete(LoginSession).where(LoginSession.user_id == user_id))


# --- for an account page: "where you are signed in" ----------------------------------------


BROWSERS = (  # order matters: Edge and Opera say Chrome, Chrome says Safari
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
)


def browser_name(user_agent: str | None) -> str:
    """A short name for a session list ("Firefox"), not a full User-Agent parse."""
    for marker, name in BROWSERS:
        if marker in (user_agent or ""):
            return name
    return "Unknown browser"


def list_sessions(user_id: str, current_token: str | None = None) -> list[dict[str, Any]]:
    """The user's live sessions, most recently used first: ``id`` (to end one with
    ``end_session_by_id``), ``browser``, ``user_agent``, ``ip``, ``created_at``,
    ``last_seen_at`` (Unix seconds) and ``current`` (the session of ``current_token``)."""
    t = now()
    rows = db.session.scalars(
        select(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.ended_at.is_(None))
        .order_by(LoginSession.last_seen_at.desc(), LoginSession.id.desc())
    )
    current = _hash(current_token) if current_token else None
    return [
        {
            "id": row.id,
            "browser": browser_name(row.user_agent),
            "user_agent": row.user_agent,
            "ip": row.ip,
            "created_at": row.created_at,
            "last_seen_at": row.last_seen_at,
            "current": row.token_hash == current,
        }
        for row in rows
        if expiry_reason(row, t) is None
    ]


def end_session_by_id(user_id: str, session_id: int, reason: str = LOGOUT) -> bool:
    """End one of the user's own sessions (from their session list); whether it was live."""
    ended = _end((LoginSession.id == session_id) & (LoginSession.user_id == user_id), reason)
    db.session.commit()
    return ended > 0
