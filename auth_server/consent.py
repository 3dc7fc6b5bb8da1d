"""Remembered consent: a user's decision per client, covering a set of scopes."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, select, update

from .extensions import db
from .models import AuthorizationCode, Consent, Token, utcnow
from .revocations import record_end_calls, revoke_grants

# "Last used" is written at most this often per consent, not on every token request.
TOUCH_INTERVAL = timedelta(minutes=1)


def _scopes(scope: str | None) -> set[str]:
    return set((scope or "").split())


def has_consent(user_id: str, client_id: str, scope: str | None) -> bool:
    """True when the user already granted this client every requested scope."""
    row = db.session.scalar(
        select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
    )
    return row is not None and _scopes(scope) <= _scopes(row.scope)


def remember_consent(user_id: str, client_id: str, scope: str | None) -> None:
    row = db.session.scalar(
        select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
    )
    if row is None:
        db.session.add(Consent(user_id=user_id, client_id=client_id, scope=scope or ""))
    else:
        row.scope = " ".join(sorted(_scopes(row.scope) | _scopes(scope)))
    db.session.commit()


def touch_consent(user_id: str, client_id: str) -> None:
    """Note that a token was issued to the client for the user (the account page's "last
    used"), at most once a :data:`TOUCH_INTERVAL`. Runs in the caller's transaction
    (``oauth2.save_token``)."""
    now = utcnow()
    db.session.execute(
        update(Consent)
        .where(
            Consent.user_id == user_id,
            Consent.client_id == client_id,
            or_(Consent.last_used_at.is_(None), Consent.last_used_at < now - TOUCH_INTERVAL),
        )
        .values(last_used_at=now)
    )


def forget_consent(user_id: str, client_id: str, end_calls: bool = False) -> None:
    """Withdraw the user's consent for the client: the client's tokens for the user are
    revoked (here and, through the revocation feed, at the call API) and its unused codes
    deleted; the next authorization request asks for consent again. With ``end_calls`` the
    feed also tells the call API to hang up the user's live calls of the client. One
    transaction."""
    # Codes first: deleting one waits for a redemption in flight (it holds the code's row
    # lock), so the grant it creates is committed before the grants are looked up.
    db.session.execute(
        delete(AuthorizationCode).where(
            AuthorizationCode.user_id == user_id, AuthorizationCode.client_id == client_id
        )
    )
    revoke_grants(Token.user_id == user_id, Token.client_id == client_id)
    if end_calls:
        record_end_calls(user_id, client_id)
    # The consent last, as every revocation orders its locks (codes, grants, consents):
    # issuing a token locks its code or grant before noting the consent's last use
    # (touch_consent), so the two never wait on each other in opposite orders.
    db.session.execute(
        delete(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
    )
    db.session.commit()


def forget_user_consents(user_id: str) -> int:
    """Forget every consent the user gave (disabling or deleting the user); how many."""
    result = db.session.execute(delete(Consent).where(Consent.user_id == user_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
