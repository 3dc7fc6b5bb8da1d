"""Who is signed in to the call API's pages: server-side sessions over the auth server's
tokens, the guard every page wears, and CSRF for every form.

The browser holds one opaque random id (cookie ``clickcall_calls_session``: HttpOnly,
SameSite=Lax, Secure when ``CALL_WEB_URL`` is https); the ``web_sessions`` row it names
(found by the id's SHA-256) holds the subject, username, scopes, the access and refresh
tokens (encrypted with a key derived from ``CALL_SECRET_KEY``), their expiry and the CSRF
secret. On every page request the stored access token is validated again like any bearer
token (``call_api.auth.verify_token``: signature, issuer, audience; and the revocation
feed), refreshed first when it is about to expire (the refresh token rotates; the row is
locked meanwhile so two requests never spend the same refresh token, which the auth server
would take for theft). A refused refresh, a revoked or otherwise invalid token, or a
session older than ``SESSION_LIFETIME``: the row is deleted and the person signs in again.

The interface other page modules use (the operator console among them)::

    @bp.get("/…")
    @require_web_login(admin=True)     # signed out: redirect to /calls/login?next=…;
    def view(): ...                    # without the ``admin`` scope: the 403 page
    current_web_user()                 # WebUser(subject, username, scopes, is_admin, session_id)
    csrf_token()                       # in templates: <input type="hidden" name="csrf_token" …>
    access_token()                     # the raw token, if a view must call out with it
    error_page(status, title, message) # the pages' error page
    add_nav_link(app, label, endpoint, admin=False)   # a link in the pages' navigation

Every POST (PUT, PATCH, DELETE) under ``PAGE_PREFIXES`` is checked by one
``before_request``: it needs a session (else a 303 to the sign-in) and the session's CSRF
token in the form field ``csrf_token`` or the ``X-CSRF-Token`` header (else the 403 page).
In tests, sign in through the real flow: ``tests/call_api/web_helpers.py``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import flask
from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken as FernetInvalid
from flask import (
    Flask,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import delete, select
from werkzeug.wrappers import Response

from shared.errors import InvalidToken

from ..auth import is_person_token, refuse_revoked, verify_token
from ..calls import now_utc
from ..extensions import db
from ..models import WebSession

SESSION_COOKIE = "clickcall_calls_session"
# Paths served as pages (HTML, cookies, CSRF): the calls pages and the operator console
# (``/calls/console``).
PAGE_PREFIXES: tuple[str, ...] = ("/calls",)
# A session ends this long after sign-in whatever happens (then a new sign-in, usually
# without a password: the auth server remembers the browser).
SESSION_LIFETIME = timedelta(hours=12)
# Refresh the access token this long before it expires (more than verify_token's leeway
# is not needed: the stored expiry is the token's own ``exp``).
REFRESH_MARGIN = timedelta(seconds=30)
# ``last_seen_at`` is written at most this often per session.
SEEN_EVERY = timedelta(seconds=60)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
COOKIE_MAX_LENGTH = 100


@dataclass(frozen=True)
class WebUser:
    """The person signed in to this request (``current_web_user()``)."""

    subject: str
    username: str
    scopes: frozenset[str]
    is_admin: bool
    session_id: str  # the session's public handle (web_sessions.id), not its cookie


class AuthServerUnavailable(Exception):
    """The auth server did not answer usefully (network, 5xx, not JSON): try again later."""


class GrantRefused(Exception):
    """The auth server refused a code or refresh token (``invalid_grant`` and the like)."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(error)
        self.error = error
        self.description = description


# --- helpers for every page module ---------------------------------------------------------


def is_page_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PAGE_PREFIXES)


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def cipher() -> Fernet:
    """Encrypts what the pages keep (tokens in ``web_sessions``, the sign-in cookie) with a
    key derived from ``CALL_SECRET_KEY``: a copy of the table alone reveals no token."""
    cached = current_app.extensions.get("clickcall_web_cipher")
    if cached is None:
        secret = str(current_app.config["CALL_SECRET_KEY"]).encode()
        digest = hashlib.sha256(b"clickcall call_api web v1\x00" + secret).digest()
        cached = Fernet(base64.urlsafe_b64encode(digest))
        current_app.extensions["clickcall_web_cipher"] = cached
    return cached


def encrypt(value: str) -> str:
    return cipher().encrypt(value.encode()).decode()


def decrypt(value: str, ttl: int | None = None) -> str:
    """The plain text; ``ValueError`` if it was not made with this key (or is too old)."""
    try:
        return cipher().decrypt(value.encode(), ttl=ttl).decode()
    except (FernetInvalid, ValueError, TypeError):
        raise ValueError("not decryptable with CALL_SECRET_KEY") from None


def secure_cookies() -> bool:
    return bool(
        current_app.config["APP_ENV"] == "production"
        or str(current_app.config["CALL_WEB_URL"]).startswith("https://")
    )


def configured() -> bool:
    return bool(current_app.config.get("CALL_WEB_CLIENT_ID"))


def not_configured_page() -> flask.Response:
    return error_page(
        503,
        "The call pages are not set up",
        "This call API has no OAuth client to sign people in with. An operator registers "
        "one at the auth server (auth-server clients create --name 'Call API pages' "
        f"--redirect-uri {current_app.config['CALL_WEB_URL']}/calls/callback "
        "--grant-type authorization_code --grant-type refresh_token --scope 'call admin' "
        "--allow-admin-for-users) and gives the call API its id and secret in "
        "CALL_WEB_CLIENT_ID and CALL_WEB_CLIENT_SECRET.",
    )


def error_page(
    status: int, title: str, message: str, *, sign_in: bool = False, next_url: str = "/calls"
) -> flask.Response:
    """The pages' error page (never a stack trace): a title, a sentence, and with
    ``sign_in`` a link to sign in again."""
    body = render_template(
        "calls_error.html",
        title=title,
        message=message,
        sign_in_url=login_url(next_url) if sign_in else None,
    )
    response: flask.Response = current_app.response_class(body, status=status, mimetype="text/html")
    return response


def safe_next(value: str | None, default: str = "/calls") -> str:
    """``value`` when it is a path on this site under ``PAGE_PREFIXES`` (no open redirect:
    no scheme, no host, no ``//`` or backslash tricks), else ``default``."""
    if not value or not isinstance(value, str) or len(value) > 2000:
        return default
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not is_page_path(parts.path):
        return default
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return default  # "/calls/../account" is another page than it says
    return value


def login_url(next_url: str | None = None) -> str:
    target = safe_next(next_url)
    if target == "/calls":
        return url_for("calls_login.login", next="/calls")
    return url_for("calls_login.login", next=target)


def _requested_path() -> str:
    if request.method not in SAFE_METHODS:
        return "/calls"
    query = request.query_string.decode("utf-8", "replace")
    return request.path + ("?" + query if query else "")


def _wants_json() -> bool:
    if request.path.endswith(".json"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and bool(request.headers.get("Accept"))


def add_nav_link(app: Flask, label: str, endpoint: str, admin: bool = False) -> None:
    """Show ``label`` (linking to ``endpoint``) in the pages' navigation; ``admin``: only to
    people whose session carries the ``admin`` scope."""
    app.extensions.setdefault("clickcall_web_nav", []).append((label, endpoint, admin))


def nav_links() -> list[dict[str, Any]]:
    """The navigation for the signed-in person (in templates: ``nav_links()``)."""
    user = g.get("web_user")
    links = []
    for label, endpoint, admin in current_app.extensions.get("clickcall_web_nav", []):
        if admin and (user is None or not user.is_admin):
            continue
        href = url_for(endpoint)
        links.append({"label": label, "href": href, "current": request.path == href})
    return links


# --- sessions ------------------------------------------------------------------------------


def create_session(tokens: dict[str, Any], claims: dict[str, Any]) -> str:
    """Store a new session for these (verified) tokens; returns the cookie value."""
    cookie = secrets.token_urlsafe(32)
    now = now_utc()
    row = WebSession(
        id=secrets.token_hex(16),
        secret_hash=hash_secret(cookie),
        subject=claims["sub"],
        username=str(claims.get("username", "")),
        scope=str(claims.get("scope", "")),
        access_token=encrypt(tokens["access_token"]),
        refresh_token=encrypt(tokens["refresh_token"]) if tokens.get("refresh_token") else None,
        access_expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        csrf_secret=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    try:
        db.session.add(row)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return cookie


def set_session_cookie(response: Response, value: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        path="/",
        httponly=True,
        secure=secure_cookies(),
        samesite="Lax",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, secure=secure_cookies(), samesite="Lax"
    )


def end_session(row: WebSession, revoke: bool = False) -> None:
    """Delete the session (and with ``revoke``, revoke its refresh token at the auth
    server, best effort); the response clears the cookie."""
    refresh = row.refresh_token
    session_id = row.id
    try:
        db.session.execute(delete(WebSession).where(WebSession.id == session_id))
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    g.web_clear_cookie = True
    g.web_session = None
    g.web_user = None
    if revoke and refresh:
        from . import login

        try:
            login.revoke(decrypt(refresh))
        except ValueError:
            pass


def end_sessions_of(subject: str) -> int:
    """Delete every session of ``subject`` (their tokens stay valid at the auth server)."""
    try:
        result = db.session.execute(delete(WebSession).where(WebSession.subject == subject))
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _refresh(row: WebSession) -> WebSession | None:
    """New tokens for a session whose access token is (nearly) expired, or ``None`` (the
    session was ended). Holds the row's lock meanwhile: a concurrent request waits, then
    finds it refreshed, and never spends the rotated refresh token a second time."""
    from . import login

    session_id = row.id
    locked = db.session.scalar(
        select(WebSession)
        .where(WebSession.id == session_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if locked is None:
        db.session.rollback()
        return None
    if locked.access_expires_at - REFRESH_MARGIN > now_utc():
        db.session.commit()  # refreshed by another request meanwhile
        return locked
    try:
        if not locked.refresh_token:
            raise GrantRefused("no_refresh_token")
        tokens = login.refresh(decrypt(locked.refresh_token))
        claims = login.validate(tokens["access_token"])
        if claims["sub"] != locked.subject:
            raise GrantRefused("subject_changed")
    except (GrantRefused, InvalidToken, ValueError):
        db.session.rollback()
        end_session(locked)
        return None
    except BaseException:
        db.session.rollback()
        raise
    locked.access_token = encrypt(tokens["access_token"])
    if tokens.get("refresh_token"):
        locked.refresh_token = encrypt(tokens["refresh_token"])
    locked.access_expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
    locked.scope = str(claims.get("scope", ""))
    locked.username = str(claims.get("username", locked.username))
    try:
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return locked


def _find(cookie: str | None) -> WebSession | None:
    if not cookie or len(cookie) > COOKIE_MAX_LENGTH or not cookie.isascii():
        return None
    return db.session.scalar(
        select(WebSession).where(WebSession.secret_hash == hash_secret(cookie))
    )


def load_session() -> WebSession | None:
    """This request's valid session (validated, refreshed if due), or ``None``; once per
    request. ``AuthServerUnavailable`` when a due refresh cannot reach the auth server."""
    if "web_session" in g:
        session: WebSession | None = g.web_session
        return session
    g.web_session = None
    g.web_user = None
    cookie = request.cookies.get(SESSION_COOKIE)
    if not configured():
        return None
    row = _find(cookie)
    if row is None:
        if cookie:
            g.web_clear_cookie = True
        return None
    now = now_utc()
    if row.expires_at <= now:
        end_session(row)
        return None
    if row.access_expires_at - REFRESH_MARGIN <= now:
        refreshed = _refresh(row)
        if refreshed is None:
            return None
        row = refreshed
    try:
        token = decrypt(row.access_token)
        claims = verify_token(token, current_app.extensions["clickcall_keys"], current_app.config)
        refuse_revoked(claims)
        if claims["sub"] != row.subject or not is_person_token(claims):
            raise InvalidToken("The session's token is not this person's.")
    except (InvalidToken, ValueError):
        end_session(row)
        return None
    if now - row.last_seen_at >= SEEN_EVERY:
        row.last_seen_at = now
        db.session.commit()
    scopes = frozenset(row.scope.split())
    g.web_session = row
    g.web_access_token = token
    g.web_user = WebUser(
        subject=row.subject,
        username=row.username,
        scopes=scopes,
        is_admin="admin" in scopes,
        session_id=row.id,
    )
    return row


def _unavailable_page() -> Response:
    return error_page(
        503,
        "The sign-in service is not answering",
        "Your session needs to be renewed with the ClickCall auth server, which cannot be "
        "reached just now. Try again in a moment.",
    )


# --- the interface -------------------------------------------------------------------------


def require_web_login(admin: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Guard a page: signed out → redirect to ``/calls/login?next=<this page>`` (a JSON
    endpoint, ``….json``: 401 ``{"error": "login_required"}``); signed in without the
    needed scope (``call``, or ``admin`` with ``admin=True``) → the 403 page."""

    def guard(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not configured():
                return not_configured_page()
            try:
                row = load_session()
            except AuthServerUnavailable:
                return _unavailable_page()
            if row is None:
                if _wants_json():
                    response = jsonify(
                        error="login_required",
                        error_description="Sign in again to see your calls.",
                        login_url=login_url(),
                    )
                    response.status_code = 401
                    return response
                return redirect(login_url(_requested_path()))
            user = current_web_user()
            needed = "admin" if admin else "call"
            if needed not in user.scopes:
                if admin:
                    return error_page(
                        403,
                        "Only operators may see this page",
                        "This page is for ClickCall operators (the admin role). You are "
                        f"signed in as {user.username}, who is not one.",
                    )
                return error_page(
                    403,
                    "Your sign-in does not cover your calls",
                    "The auth server did not grant these pages the 'call' scope. Sign out "
                    "and sign in again, allowing access to your calls.",
                )
            return view(*args, **kwargs)

        guarded.requires_web_login = True  # type: ignore[attr-defined]
        guarded.requires_admin = admin  # type: ignore[attr-defined]
        return guarded

    return guard


def current_web_user() -> WebUser:
    """The signed-in person (inside a view guarded by ``require_web_login``)."""
    user: WebUser | None = g.get("web_user")
    if user is None:
        raise RuntimeError("current_web_user() outside a view guarded by require_web_login")
    return user


def csrf_token() -> str:
    """The session's CSRF token, for a hidden ``csrf_token`` field in every form."""
    row: WebSession | None = g.get("web_session")
    if row is None:
        return ""
    return row.csrf_secret


def access_token() -> str:
    """The session's current access token (never put it in a page or a log)."""
    token: str | None = g.get("web_access_token")
    if token is None:
        raise RuntimeError("access_token() outside a view guarded by require_web_login")
    return token


def check_csrf() -> Response | None:
    """``None`` when this unsafe request carries its session's CSRF token; else the
    response to send instead (303 to the sign-in when signed out, the 403 page)."""
    if not configured():
        return not_configured_page()
    try:
        row = load_session()
    except AuthServerUnavailable:
        return _unavailable_page()
    if row is None:
        return redirect(login_url(), code=303)
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not hmac.compare_digest(sent.encode(), row.csrf_secret.encode()):
        return error_page(
            403,
            "This form has expired",
            "The form did not carry this session's security token (it may come from "
            "another tab, an older session or another site). Nothing was changed; go back, "
            "reload the page and try again.",
        )
    return None


def _protect() -> Response | None:
    if request.method in SAFE_METHODS or not is_page_path(request.path):
        return None
    return check_csrf()


def _after(response: Response) -> Response:
    if g.get("web_clear_cookie") and not g.get("web_cookie_set"):
        clear_session_cookie(response)
    return response


def init_app(app: Flask) -> None:
    """The CSRF check, the cookie clean-up and the template helpers."""
    app.before_request(_protect)
    app.after_request(_after)
    app.jinja_env.globals.update(
        csrf_token=csrf_token,
        nav_links=nav_links,
        web_user=lambda: g.get("web_user"),
    )
