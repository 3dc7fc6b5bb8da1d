"""The call rules: start (under the per-user limit), end, read, expire.

Every function works on the Flask-SQLAlchemy session and raises named errors from
``shared.errors``. The limit holds under any concurrency because ``start_call`` takes a row
lock on the caller's ``call_users`` row (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite
every transaction is ``BEGIN IMMEDIATE``), then counts and inserts in the same transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from shared.errors import (
    IdempotencyKeyReused,
    InvalidRequest,
    ObjectDoesNotExist,
    RestMaxCallError,
)

from .extensions import db
from .metrics import CALLS_ENDED, CALLS_STARTED, LIMIT_REFUSALS
from .models import Call, CallUser

MAX_IDEMPOTENCY_KEY = 255
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class Policy:
    default_limit: int
    max_duration: int  # seconds

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Policy:
        return cls(
            default_limit=config["CALL_MAX_ONGOING_DEFAULT"],
            max_duration=config["CALL_MAX_DURATION"],
        )


@dataclass(frozen=True)
class Started:
    call: Call
    replayed: bool


def now_utc() -> datetime:
    return datetime.now(UTC)


def _cutoff(policy: Policy, now: datetime) -> datetime:
    return now - timedelta(seconds=policy.max_duration)


def _commit_keeping_values() -> None:
    """COMMIT without expiring the session's objects (SQLAlchemy's ``expire_on_commit``).

    Every value the call functions hand back was written by this transaction or read under
    its row lock, so nothing needs re-reading; expiring them made the view's ``as_dict``
    reload the call: a second connection checkout (pre-ping), BEGIN, SELECT and ROLLBACK
    after every POST and PUT /rest/call (docs/PERFORMANCE.md, "app fixes").
    """
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


def _ensure_user(subject: str) -> None:
    """Insert the subject's row if missing, without failing when another request races us."""
    dialect = db.session.get_bind().dialect.name
    values = {"subject": subject, "created_at": now_utc(), "updated_at": now_utc()}
    if dialect == "postgresql":
        stmt: Any = pg_insert(CallUser).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite_insert(CallUser).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - other databases are not supported
        if db.session.get(CallUser, subject) is not None:
            return
        stmt = CallUser.__table__.insert().values(**values)
    db.session.execute(stmt)


def _lock_user(subject: str) -> CallUser:
    _ensure_user(subject)
    user = db.session.scalar(select(CallUser).where(CallUser.subject == subject).with_for_update())
    assert user is not None
    return user


def _expired(call: Call, policy: Policy) -> None:
    call.status = "ended"
    call.end_reason = "expired"
    call.ended_at = call.started_at + timedelta(seconds=policy.max_duration)
    CALLS_ENDED.labels("expired").inc()


def _expire_overdue(policy: Policy, now: datetime, subject: str | None = None) -> int:
    """End ongoing calls older than the maximum duration (``end_reason: expired``)."""
    cutoff = _cutoff(policy, now)
    overdue = select(Call).where(Call.status == "ongoing", Call.started_at <= cutoff)
    if subject is not None:
        overdue = overdue.where(Call.subject == subject)
    count = 0
    for call in db.session.scalars(overdue.with_for_update()):
        _expired(call, policy)
        count += 1
    return count


def _expire_one(call: Call, policy: Policy, now: datetime) -> bool:
    if call.status == "ongoing" and call.started_at <= _cutoff(policy, now):
        _expired(call, policy)
        return True
    return False


def fingerprint(number: str) -> str:
    return hashlib.sha256(number.encode()).hexdigest()


def validate_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or any(ord(c) < 33 or ord(c) > 126 for c in key):
        raise InvalidRequest(
            f"The Idempotency-Key must be 1–{MAX_IDEMPOTENCY_KEY} visible ASCII characters."
        )
    return key


def limit_for(user: CallUser | None, policy: Policy) -> int:
    if user is not None and user.max_ongoing is not None:
        return user.max_ongoing
    return policy.default_limit


def ongoing_count(subject: str) -> int:
    return int(
        db.session.scalar(
            select(func.count())
            .select_from(Call)
            .where(Call.subject == subject, Call.status == "ongoing")
        )
        or 0
    )


def start_call(
    subject: str,
    client_id: str,
    number: str,
    policy: Policy,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Started:
    """Open a call session for ``subject`` unless that would exceed their limit.

    ``number`` must already be E.164. A repeated ``idempotency_key`` with the same number
    returns the first call (``replayed=True``); with another number it is an error.
    """
    now = now or now_utc()
    request_hash = fingerprint(number)
    try:
        user = _lock_user(subject)
        if idempotency_key is not None:
            previous = db.session.scalar(
                select(Call).where(
                    Call.subject == subject,
                    Call.client_id == client_id,
                    Call.idempotency_key == idempotency_key,
                )
            )
            if previous is not None:
                if previous.request_hash != request_hash:
                    raise IdempotencyKeyReused()
                _expire_one(previous, policy, now)
                _commit_keeping_values()
                return Started(previous, replayed=True)
        _expire_overdue(policy, now, subject)
        limit = limit_for(user, policy)
        ongoing = ongoing_count(subject)
        if ongoing >= limit:
            LIMIT_REFUSALS.inc()
            raise RestMaxCallError(
                f"You already have {ongoing} ongoing call(s); the limit is {limit}.",
                extra={"max_ongoing": limit, "ongoing": ongoing},
            )
        call = Call(
            token_call=secrets.token_urlsafe(24),
            subject=subject,
            client_id=client_id,
            number=number,
            status="ongoing",
            started_at=now,
            idempotency_key=idempotency_key,
            request_hash=request_hash if idempotency_key is not None else None,
        )
        db.session.add(call)
        _commit_keeping_values()
        CALLS_STARTED.inc()
        return Started(call, replayed=False)
    except BaseException:
        db.session.rollback()
        raise


def _find(token_call: str, subject: str | None, lock: bool = False) -> Call:
    if not token_call or len(token_call) > 64 or "\x00" in token_call:
        # NUL: PostgreSQL text cannot hold it (psycopg2 raises ValueError, a 500 before this)
        raise ObjectDoesNotExist("No such call.")
    query = select(Call).where(Call.token_call == token_call)
    if subject is not None:
        query = query.where(Call.subject == subject)
    if lock:
        query = query.with_for_update()
    call = db.session.scalar(query)
    if call is None:
        raise ObjectDoesNotExist("No such call.")
    return call


def get_call(token_call: str, policy: Policy, subject: str | None = None) -> Call:
    """The call (someone else's is as unknown as a missing one)."""
    call = _find(token_call, subject)
    if _expire_one(call, policy, now_utc()):
        _commit_keeping_values()
    return call


def end_call(
    token_call: str,
    policy: Policy,
    subject: str | None = None,
    reason: str = "hangup",
    now: datetime | None = None,
) -> Call:
    """End an ongoing call; ending an ended call changes nothing (PUT is idempotent)."""
    now = now or now_utc()
    try:
        call = _find(token_call, subject, lock=True)
        if not _expire_one(call, policy, now) and call.status == "ongoing":
            call.status = "ended"
            call.end_reason = reason
            call.ended_at = max(now, call.started_at)
            CALLS_ENDED.labels(reason).inc()
        _commit_keeping_values()
        return call
    except BaseException:
        db.session.rollback()
        raise


def list_ongoing(subject: str, policy: Policy) -> list[Call]:
    if _expire_overdue(policy, now_utc(), subject):
        db.session.commit()
    return list(
        db.session.scalars(
            select(Call)
            .where(Call.subject == subject, Call.status == "ongoing")
            .order_by(Call.started_at, Call.id)
        )
    )


def list_calls(
    subject: str, policy: Policy, status: str = "all", page: int = 1, per_page: int = 20
) -> tuple[list[Call], int]:
    if _expire_overdue(policy, now_utc(), subject):
        db.session.commit()
    query = select(Call).where(Call.subject == subject)
    if status in ("ongoing", "ended"):
        query = query.where(Call.status == status)
    total = int(db.session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = db.session.scalars(
        query.order_by(Call.started_at.desc(), Call.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return list(rows), total


def user_summary(subject: str, policy: Policy, recent: int = 10) -> dict[str, Any]:
    calls, _ = list_calls(subject, policy, "all", 1, recent)
    user = db.session.get(CallUser, subject)
    return {
        "subject": subject,
        "max_ongoing": limit_for(user, policy),
        "limit_source": "user" if user is not None and user.max_ongoing is not None else "default",
        "ongoing": ongoing_count(subject),
        "recent_calls": calls,
    }


def set_limit(subject: str, max_ongoing: int | None) -> None:
    """Set (or, with ``None``, clear) a user's own limit. Lowering it ends no call."""
    if max_ongoing is not None and not 0 <= max_ongoing <= MAX_LIMIT:
        raise InvalidRequest(f"max_ongoing must be an integer from 0 to {MAX_LIMIT}.")
    try:
        user = _lock_user(subject)
        user.max_ongoing = max_ongoing
        user.updated_at = now_utc()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def expire_calls(policy: Policy) -> int:
    """For a cron: end every overdue call now. Returns how many were ended."""
    try:
        count = _expire_overdue(policy, now_utc())
        db.session.commit()
        return count
    except BaseException:
        db.session.rollback()
        raise


def as_dict(call: Call) -> dict[str, Any]:
    duration = None
    if call.ended_at is not None:
        duration = max(0, int((call.ended_at - call.started_at).total_seconds()))
    return {
        "token_call": call.token_call,
        "number": call.number,
        "status": call.status,
        "started_at": iso(call.started_at),
        "ended_at": iso(call.ended_at),
        "duration": duration,
        "end_reason": call.end_reason,
        "client_id": call.client_id,
        "subject": call.subject,
    }


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
