"""The device authorization grant (RFC 8628): device codes, user codes, polling, decisions.

A device (desk phone, kiosk, command-line tool) asks ``/oauth/device_authorization`` for a
``device_code`` (kept as its SHA-256) and a ``user_code`` (8 letters of
:data:`USER_CODE_ALPHABET`, shown ``BCDF-GHJK``); its user types the code on the /device
page (views/device.py), signs in, sees the consent and approves or denies; meanwhile the
device polls the token endpoint (:func:`poll`) and gets ``authorization_pending``,
``slow_down``, ``expired_token``, ``access_denied`` or its tokens, once.

Not to be confused with auth_server/devices.py (the login page's device cookies).
"""

from __future__ import annotations

import secrets
import time

from authlib.oauth2.rfc6749.errors import AccessDeniedError, InvalidGrantError
from authlib.oauth2.rfc8628 import AuthorizationPendingError, ExpiredTokenError, SlowDownError
from flask import current_app
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from .consent import has_consent, remember_consent
from .extensions import db
from .models import Client, DeviceCode, User, active_user, sha256_hex
from .rules import scope_for_role

# RFC 8628 §6.1: consonants only (no vowels: no words; no easily confused letters), upper
# case; 20^8 ≈ 2.6e10 codes, against a rate-limited guesser (the /device page's limits).
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
# RFC 8628 §3.5: each slow_down adds 5 seconds to the interval, for good.
SLOW_DOWN_STEP = 5
# Expired codes are deleted this long after they expired (until then a poll is told
# expired_token rather than invalid_grant).
KEEP_EXPIRED = 3600

PENDING, APPROVED, DENIED, USED = "pending", "approved", "denied", "used"


def now() -> int:
    """The time every rule here uses (tests move it)."""
    return int(time.time())


def normalise_user_code(value: str | None) -> str | None:
    """The code as stored (upper case, no dash or space), or ``None`` when it cannot be one:
    ``"bcdf-ghjk"``, ``"BCDF GHJK"`` and ``"BCDFGHJK"`` are the same code."""
    if not value or len(value) > 4 * USER_CODE_LENGTH:
        return None
    code = "".join(value.split()).replace("-", "").upper()
    if len(code) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in code):
        return None
    return code


def display_user_code(code: str) -> str:
    """``BCDFGHJK`` → ``BCDF-GHJK``, as the device shows it."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def _new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def prune() -> None:
    """Forget the codes that expired more than :data:`KEEP_EXPIRED` seconds ago."""
    db.session.execute(delete(DeviceCode).where(DeviceCode.expires_at < now() - KEEP_EXPIRED))


def start(client: Client, scope: str) -> tuple[str, DeviceCode]:
    """A new device authorization for ``client``: the ``device_code`` (shown once) and its
    row. The user code is unique among the stored codes (a collision draws another)."""
    prune()
    db.session.commit()
    for _ in range(5):
        device_code = secrets.token_urlsafe(32)
        issued = now()
        row = DeviceCode(
            device_code_hash=sha256_hex(device_code),
            user_code=_new_user_code(),
            client_id=client.client_id,
            scope=scope,
            created_at=issued,
            expires_at=issued + current_app.config["AUTH_DEVICE_CODE_TTL"],
            poll_interval=current_app.config["AUTH_DEVICE_POLL_INTERVAL"],
            status=PENDING,
        )
        db.session.add(row)
        try:
            db.session.commit()
        except IntegrityError:  # the user code is taken (1 in 2.6e10 per stored code)
            db.session.rollback()
            continue
        return device_code, row
    raise RuntimeError("could not draw a free user code")  # pragma: no cover


# --- the /device page --------------------------------------------------------------------


def find_pending(user_code: str | None) -> DeviceCode | None:
    """The live, undecided request for this user code (as typed), or ``None``."""
    code = normalise_user_code(user_code)
    if code is None:
        return None
    row = db.session.scalar(select(DeviceCode).where(DeviceCode.user_code == code))
    if row is None or row.status != PENDING or row.expires_at <= now():
        return None
    return row


def scope_for(row: DeviceCode, user: User) -> str:
    """What ``user`` can grant of what the device asks for ("" when nothing)."""
    return scope_for_role(row.scope, user.role)


def decide(row: DeviceCode, user: User, approve: bool) -> bool:
    """Record ``user``'s decision; ``False`` when the request was decided meanwhile (by
    another tab or user) or expired. An approval is remembered as the user's consent, so
    the app shows on their account page, where they can withdraw it."""
    scope = scope_for(row, user) if approve else ""
    decided = db.session.execute(
        update(DeviceCode)
        .where(
            DeviceCode.id == row.id,
            DeviceCode.status == PENDING,
            DeviceCode.expires_at > now(),
        )
        .values(
            status=APPROVED if approve and scope else DENIED,
            user_id=user.id,
            approved_scope=scope if approve else None,
            decided_at=now(),
        )
    )
    if decided.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        return False
    db.session.commit()
    if approve and scope:
        remember_consent(user.id, row.client_id, scope)
    return True


# --- the token endpoint --------------------------------------------------------------------

UNKNOWN = "The device code is unknown: this server never issued it, or it was cut short."
OTHER_CLIENT = "The device code was issued to another client."
ALREADY_USED = (
    "The device code was already used; start a new device authorization request for new tokens."
)
EXPIRED = (
    "The device code has expired before the user approved it; start a new device "
    "authorization request."
)
DENIED_TEXT = "The user denied the device's request on the /device page."
NO_USER = "The user who approved this device code no longer exists or is disabled."
WITHDRAWN = (
    "The user withdrew this application's access after approving the device code; start a "
    "new device authorization request."
)


def pending_text(interval: int) -> str:
    return (
        "The user has not yet approved the request on the /device page; poll again in "
        f"{interval} seconds."
    )


def slow_down_text(interval: int) -> str:
    return (
        "Polling faster than the interval; wait at least "
        f"{interval} seconds between polls of this device code from now on."
    )


def poll(device_code: str, client: Client) -> tuple[DeviceCode, User]:
    """The device's poll (RFC 8628 §3.4, §3.5): the approved request and its user, claimed
    for this one token response; or the error the device must get.

    Refusals in this order: unknown code, another client's, already used (``invalid_grant``),
    expired (``expired_token``), denied (``access_denied``), still pending
    (``authorization_pending``, or ``slow_down`` when polled sooner than the interval after
    the previous poll: the interval grows by 5 s for good). An approved code is claimed
    atomically, so of two polls at once only one gets tokens (the other ``invalid_grant``).
    """
    row = db.session.scalar(
        select(DeviceCode).where(DeviceCode.device_code_hash == sha256_hex(device_code))
    )
    if row is None:
        raise InvalidGrantError(UNKNOWN)
    if row.client_id != client.client_id:
        raise InvalidGrantError(OTHER_CLIENT)
    if row.status == USED:
        raise InvalidGrantError(ALREADY_USED)
    current = now()
    if row.expires_at <= current:
        raise ExpiredTokenError(EXPIRED)
    if row.status == DENIED:
        raise AccessDeniedError(DENIED_TEXT)
    if row.status == PENDING:
        _pending(row, current)
    user = active_user(row.user_id)
    if user is None:
        raise InvalidGrantError(NO_USER)
    if not has_consent(user.id, client.client_id, row.approved_scope):
        raise InvalidGrantError(WITHDRAWN)
    claimed = db.session.execute(
        update(DeviceCode)
        .where(DeviceCode.id == row.id, DeviceCode.status == APPROVED)
        .values(status=USED, used_at=current)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        raise InvalidGrantError(ALREADY_USED)
    db.session.commit()
    return row, user


def _pending(row: DeviceCode, current: int) -> None:
    """Note this poll; raise ``slow_down`` (the interval grown) or ``authorization_pending``."""
    too_soon = row.last_polled_at is not None and current - row.last_polled_at < row.poll_interval
    interval = row.poll_interval + SLOW_DOWN_STEP if too_soon else row.poll_interval
    db.session.execute(
        update(DeviceCode)
        .where(DeviceCode.id == row.id)
        .values(last_polled_at=current, poll_interval=interval)
    )
    db.session.commit()
    if too_soon:
        raise SlowDownError(slow_down_text(interval))
    raise AuthorizationPendingError(pending_text(interval))
