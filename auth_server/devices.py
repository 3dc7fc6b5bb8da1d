"""Device cookies: guessing is throttled without locking the real user out.

OWASP's "Slow Down Online Guessing Attacks with Device Cookies": a browser that has signed
in as a user gets a signed cookie naming that user (normalised username) and a random
nonce. A login attempt for that user carrying it is throttled on the device's own
allowance (``LOGIN_LIMIT_PER_DEVICE``, keyed by the nonce); attempts from unknown devices
share the per-username budget (``LOGIN_LIMIT_PER_USERNAME``). An attacker who exhausts the
username budget from any number of addresses only blocks unknown devices: the owner's
browser still signs in. Flask-Limiter counts both (Redis across replicas); this module only
issues and reads the cookie.

The cookie is signed with ``SECRET_KEY`` (itsdangerous, its own salt), ``HttpOnly``,
``SameSite=Lax``, ``Secure`` with ``SESSION_COOKIE_SECURE``, path ``/auth``, and lasts
``DEVICE_COOKIE_MAX_AGE``. It signs nobody in: it only chooses which budget counts.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Response, after_this_request, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from .accounts import normalise_username

DEVICE_COOKIE = "clickcall_device"
DEVICE_COOKIE_PATH = "/auth"
DEVICE_COOKIE_MAX_AGE = 180 * 24 * 3600
_SALT = "clickcall.login-device-cookie"
_MAX_COOKIE = 4096
_READ = "clickcall.device_cookie"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=_SALT)  # type: ignore[arg-type]


def issue(username: str, nonce: str | None = None) -> str:
    """A device-cookie value for ``username`` (a new nonce unless one is given)."""
    payload = {"u": normalise_username(username), "n": nonce or secrets.token_urlsafe(16)}
    return _serializer().dumps(payload)


def read(value: str | None) -> tuple[str, str] | None:
    """``(normalised username, nonce)`` of a genuine, unexpired cookie value, else ``None``."""
    if not value or len(value) > _MAX_COOKIE:
        return None
    try:
        payload: Any = _serializer().loads(value, max_age=DEVICE_COOKIE_MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(payload, dict):
        return None
    username, nonce = payload.get("u"), payload.get("n")
    if not isinstance(username, str) or not isinstance(nonce, str) or not nonce:
        return None
    return username, nonce


def known_device(username: str) -> str | None:
    """The nonce of this request's device cookie when it is for ``username``, else ``None``."""
    if _READ not in request.environ:  # read once per request
        request.environ[_READ] = read(request.cookies.get(DEVICE_COOKIE))
    found: tuple[str, str] | None = request.environ[_READ]
    if found is None or found[0] != normalise_username(username):
        return None
    return found[1]


def remember_device(username: str) -> None:
    """After a successful sign-in: this browser is a known device for ``username`` (the
    cookie is set on the response; an existing one for the same user keeps its nonce)."""
    value = issue(username, known_device(username))

    @after_this_request
    def _set_cookie(response: Response) -> Response:
        response.set_cookie(
            DEVICE_COOKIE,
            value,
            max_age=DEVICE_COOKIE_MAX_AGE,
            path=DEVICE_COOKIE_PATH,
            secure=bool(current_app.config["SESSION_COOKIE_SECURE"]),
            httponly=True,
            samesite="Lax",
        )
        return response
