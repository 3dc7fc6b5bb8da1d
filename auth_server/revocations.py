"""The revocation feed: what resource servers must stop accepting, and until when.

Access tokens are JWTs that the call API checks locally, so revoking one here did not
reach it before the token expired. Now every revocation also writes an entry here, in the
same transaction as the revocation itself (:func:`record`), and ``GET /oauth/revocations
?after=<cursor>`` serves the entries newer than the cursor. The call API polls it every
few seconds (``call_api/revocations.py``) and refuses matching tokens with a set lookup:
no call to this server per request.

Kinds (``value`` is what the call API matches against a token's claims):

- ``jti``: one access token, revoked at ``/oauth/revoke``.
- ``grant``: every token of one grant — the ``grant_id`` claim, the token family that one
  code redemption or implicit authorization starts and its refreshes continue: a refresh
  token revoked or reused, a code replayed, the user's consent for the client withdrawn.
- ``sub``: every token of a user issued before ``issued_before`` (the user disabled or
  deleted). The value is the SHA-256 (hex) of the ``sub`` claim: the feed is public and
  names no user (subjects are random UUIDs, so the hash cannot be reversed).
- ``client``: every token of a client issued before ``issued_before`` (the client
  deleted). Rotating a client's secret revokes nothing: it is routine, planned with the
  client's operators, and the tokens already out stay valid, as introspection says.
- ``end_calls``: not a token revocation but an order that rides the same feed: the user
  removed an app on the account page and asked to hang up its live calls. ``value`` is the
  subject's hash (as for ``sub``), the entry's ``client_id`` names the app, and the call
  API ends that subject's live calls of that client started before ``issued_before``
  (``end_reason: revoked``). The app's tokens are stopped by the ``grant`` entries
  written with it. Resource servers that do not know the kind skip it.

An entry matters until every token it covers has expired: ``expires_at``, the covered
token's own expiry for ``jti``, now plus the longest access-token lifetime for the others.
The feed keeps serving an entry for :data:`FEED_GRACE` seconds more (resource servers
allow some clock skew on ``exp``) and forgets it after that.

The ``id`` is the cursor. Ids are handed out when a transaction inserts and become
visible when it commits, so a reader can see id 12 before id 11 commits; the call API
therefore re-reads a short window behind its cursor (see call_api/revocations.py), and
each entry is idempotent.

Revoking a grant lives here too (:func:`revoke_family`, :func:`revoke_grants`,
:func:`revoke_code_tokens`): every way to revoke goes through them, so none can forget to
publish, and accounts and consents revoke without importing the Authlib wiring.
"""

from __future__ import annotations

import time
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select, update

from shared.revocation import subject_hash

from .extensions import db
from .models import AuthorizationCode, Revocation, Token, TokenFamily

KINDS = ("jti", "grant", "sub", "client", "end_calls")
# Entries per response; the response says ``more`` when there may be further ones.
FEED_PAGE = 500
# Seconds an entry stays in the feed after its expires_at (clock skew, resource servers'
# leeway on exp). The call API's CALL_TOKEN_LEEWAY must not exceed it.
FEED_GRACE = 300
# Pruning of forgotten entries runs at most this often per process (from the feed view).
PRUNE_INTERVAL = 60
_last_pruned = float("-inf")


def longest_token_lifetime() -> int:
    """Seconds the longest-lived access token lives (every grant type's lifetime)."""
    table: dict[str, int] = current_app.config["OAUTH2_TOKEN_EXPIRES_IN"]
    return max([int(current_app.config["ACCESS_TOKEN_TTL"]), *map(int, table.values())])


def record(
    kind: str,
    value: str,
    *,
    issued_before: int | None = None,
    expires_at: int | None = None,
    client_id: str | None = None,
) -> None:
    """Add a feed entry in the caller's transaction (the caller commits).

    ``jti`` and ``grant`` entries are written once: while one for the same value is in the
    feed, recording it again (a replayed code, a reused refresh token sent again and again)
    adds nothing, so nobody can flood the feed with copies. (No token of a revoked grant
    is issued after its entry, so the first entry covers them all.)
    """
    if kind not in KINDS:
        raise ValueError(f"unknown revocation kind {kind!r}")
    now = int(time.time())
    if expires_at is None:
        expires_at = now + longest_token_lifetime()
    if kind in ("jti", "grant"):
        existing = db.session.scalar(
            select(Revocation.id)
            .where(
                Revocation.kind == kind,
                Revocation.value == value,
                Revocation.expires_at > now,
            )
            .limit(1)
        )
        if existing is not None:
            return
    elif issued_before is None:
        # Tokens are stamped in whole seconds: this second's tokens are covered too.
        issued_before = now + 1
    db.session.add(
        Revocation(
            kind=kind,
            value=value,
            issued_before=issued_before,
            created_at=now,
            expires_at=expires_at,
            client_id=client_id,
        )
    )


def record_subject(user_id: str) -> None:
    """Every token the user holds stops at resource servers (disabled, deleted)."""
    record("sub", subject_hash(user_id))


def record_client(client_id: str) -> None:
    """Every token issued to the client so far stops (the client deleted)."""
    record("client", client_id)


def record_end_calls(user_id: str, client_id: str) -> None:
    """The call API hangs up the user's live calls of the client (the user removed the app
    on the account page and asked for it). The entry stays in the feed as long as a
    ``sub`` entry does, so a call API that was away for a while still acts on it."""
    record("end_calls", subject_hash(user_id), client_id=client_id)


def describe(row: Revocation) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": row.id, "kind": row.kind, "value": row.value}
    if row.client_id is not None:
        entry["client_id"] = row.client_id
    if row.issued_before is not None:
        entry["issued_before"] = row.issued_before
    entry["expires_at"] = row.expires_at
    return entry


def feed(after: int, limit: int = FEED_PAGE) -> dict[str, Any]:
    """The entries after ``after`` that still matter, oldest first, and the next cursor.

    ``cursor`` is the newest id this answer accounts for: the last entry's when the page is
    full (``more``: ask again from it), else the newest id in the table — entries between
    that were forgotten. A cursor below the one asked for means the feed was reset (a
    new database): the reader starts again from 0.
    """
    now = int(time.time())
    top = int(db.session.scalar(select(func.max(Revocation.id))) or 0)
    rows = list(
        db.session.scalars(
            select(Revocation)
            .where(
                Revocation.id > after,
                Revocation.id <= top,
                Revocation.expires_at > now - FEED_GRACE,
            )
            .order_by(Revocation.id)
            .limit(limit)
        )
    )
    more = len(rows) == limit
    return {
        "revocations": [describe(row) for row in rows],
        "cursor": rows[-1].id if more else top,
        "more": more,
    }


def prune() -> int:
    """Delete the entries the feed no longer serves (never the newest, which keeps the
    cursor where readers expect it); at most once per PRUNE_INTERVAL per process."""
    global _last_pruned
    if time.monotonic() - _last_pruned < PRUNE_INTERVAL:
        return 0
    _last_pruned = time.monotonic()
    top = select(func.max(Revocation.id)).scalar_subquery()
    result = db.session.execute(
        delete(Revocation).where(
            Revocation.expires_at <= int(time.time()) - FEED_GRACE, Revocation.id < top
        )
    )
    db.session.commit()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- revoking grants (and so publishing them) ------------------------------------------


def revoke_family(family_id: str) -> None:
    """Revoke a grant: the family itself, then every token in it (the caller's transaction).

    The family row is marked (and so locked) first, and its tokens are revoked by a later
    statement: a token that ``oauth2.save_token`` committed into the family before the lock was
    released is seen and revoked (each statement sees what committed before it began, on
    PostgreSQL's READ COMMITTED; SQLite runs one write transaction at a time), and one not
    yet saved is refused by ``oauth2.save_token``, which checks the mark under the same lock.
    """
    now = int(time.time())
    db.session.execute(
        update(TokenFamily)
        .where(TokenFamily.id == family_id)
        .values(revoked_at=func.coalesce(TokenFamily.revoked_at, now))
    )
    db.session.execute(
        update(Token)
        .where(Token.family_id == family_id, Token.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    record("grant", family_id)  # the call API stops its access tokens


def revoke_grants(*conditions: Any) -> list[str]:
    """Revoke, each through :func:`revoke_family` (so under its lock, and published in the
    revocation feed), every live grant with a token matching ``conditions``; in a fixed
    order, so two revocations never deadlock. Returns the grants' ids."""
    families = list(
        db.session.scalars(
            select(Token.family_id)
            .where(Token.revoked_at.is_(None), *conditions)
            .group_by(Token.family_id)
            .order_by(Token.family_id)
        )
    )
    for family_id in families:
        revoke_family(family_id)
    return families


def revoke_code_tokens(code_id: int) -> bool:
    """Revoke what an authorization code produced (the caller's transaction): mark the code
    (so a redemption still in flight is refused by ``oauth2.save_token``, which checks the mark
    under the same row lock), then revoke the family of every token issued from it, their
    refreshes included. Says whether any token had been issued from the code.
    """
    now = int(time.time())
    db.session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.id == code_id)
        .values(revoked_at=func.coalesce(AuthorizationCode.revoked_at, now))
    )
    families = sorted(
        set(db.session.scalars(select(Token.family_id).where(Token.code_id == code_id)))
    )
    for family_id in families:
        revoke_family(family_id)
    return bool(families)
