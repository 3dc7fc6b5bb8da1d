"""Remembered consent: a user's decision per client, covering a set of scopes."""

from __future__ import annotations

from sqlalchemy import delete, select

from .extensions import db
from .models import AuthorizationCode, Consent, Token
from .revocations import revoke_grants


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


def forget_consent(user_id: str, client_id: str) -> None:
    """Withdraw the user's consent for the client: the client's tokens for the user are
    revoked (here and, through the revocation feed, at the call API) and its unused codes
    deleted; the next authorization request asks for consent again."""
    row = db.session.scalar(
        select(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
    )
    if row is not None:
        db.session.delete(row)
    # Codes first: deleting one waits for a redemption in flight (it holds the code's row
    # lock), so the grant it creates is committed before the grants are looked up.
    db.session.execute(
        delete(AuthorizationCode).where(
            AuthorizationCode.user_id == user_id, AuthorizationCode.client_id == client_id
        )
    )
    revoke_grants(Token.user_id == user_id, Token.client_id == client_id)
    db.session.commit()


def forget_user_consents(user_id: str) -> int:
    """Forget every consent the user gave (disabling or deleting the user); how many."""
    result = db.session.execute(delete(Consent).where(Consent.user_id == user_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
