"""The call rules: start (under the per-user limit), end, read, expire, and every
transition of a call's lifecycle (``transition``), which writes the call's event (history
and webhook outbox, ``models.CallEvent``) in the same transaction as the change.

Every function works on the Flask-SQLAlchemy session and raises named errors from
``shared.errors``. The limit holds under any concurrency because ``start_call`` takes a row
lock on the caller's ``call_users`` row (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite
every transaction is ``BEGIN IMMEDIATE``), then counts and inserts in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Integer,
    String,
    Text,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult, Row

from shared.db import autocommit_read
from shared.errors import (
    IdempotencyKeyReused,
    InvalidRequest,
    ObjectDoesNotExist,
    RestMaxCallError,
)

from . import lifecycle
from .extensions import db
from .metrics import CALL_TRANSITIONS, CALLS_ENDED, CALLS_STARTED, LIMIT_REFUSALS
from .models import Call, CallEvent, CallUser, UTCDateTime, WebhookEndpoint

MAX_IDEMPOTENCY_KEY = 255
MAX_LIMIT = 10_000
RING_TIMEOUT_DEFAULT = 30
RING_TIMEOUT_MAX = 120
# Seconds past an answered call's time_limit before the API ends it itself: the dialer's
# own hang-up (``end_reason: remote``) normally comes first.
TIME_LIMIT_GRACE = 5


@dataclass(frozen=True)
class Policy:
    default_limit: int
    max_duration: int  # seconds
    lease_seconds: int = 30  # a dialer's hold on a call, renewed by its polls and events
    max_claims: int = 3  # times a queued call may be claimed before a lost lease fails it
    webhook_retry_for: int = 86_400  # seconds an event is retried before it is given up

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Policy:
        return cls(
            default_limit=config["CALL_MAX_ONGOING_DEFAULT"],
            max_duration=config["CALL_MAX_DURATION"],
            lease_seconds=config.get("CALL_DIALER_LEASE_SECONDS", 30),
            max_claims=config.get("CALL_DIALER_MAX_CLAIMS", 3),
            webhook_retry_for=config.get("CALL_WEBHOOK_RETRY_FOR", 86_400),
        )


@dataclass(frozen=True)
class CallOptions:
    """What a call may ask for besides its number (``None``: the service's default)."""

    time_limit: int | None = None
    ring_timeout: int | None = None
    status_callback: str | None = None

    def fingerprint_part(self) -> str:
        if self == CallOptions():
            return ""  # calls made before options existed keep their Idempotency-Key hash
        return json.dumps([self.time_limit, self.ring_timeout, self.status_callback])


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


_LOCK_USER = (
    select(CallUser.__table__.c.max_ongoing)
    .where(CallUser.__table__.c.subject == bindparam("subject"))
    .with_for_update()
)


def _lock_user_limit(subject: str) -> int | None:
    """Lock the subject's row (creating it if missing) and return its own limit (``None``:
    the default). The row exists after a user's first call, so in the steady state this is
    one ``SELECT … FOR UPDATE``; the ``INSERT … ON CONFLICT`` comes only when it is missing."""
    row = db.session.execute(_LOCK_USER, {"subject": subject}).first()
    if row is None:
        _ensure_user(subject)
        row = db.session.execute(_LOCK_USER, {"subject": subject}).one()
    limit: int | None = row[0]
    return limit


def _lock_user(subject: str) -> CallUser:
    _ensure_user(subject)
    user = db.session.scalar(select(CallUser).where(CallUser.subject == subject).with_for_update())
    assert user is not None
    return user


def event_payload(call: Call | Row[Any], state: str, at: datetime) -> str:
    """The webhook body: ``{"type": "call.<state>", "timestamp": …, "data": <the call>}``."""
    return json.dumps(
        {"type": lifecycle.event_type(state), "timestamp": iso(at), "data": as_dict(call)}
    )


def _destination(call: Call) -> str | None:
    if call.status_callback:
        return call.status_callback
    return db.session.scalar(
        select(WebhookEndpoint.url).where(WebhookEndpoint.client_id == call.client_id)
    )


# The event row and its destination in one statement: the client's webhook URL (unless the
# call has its own) is looked up inside the INSERT, which saved a round trip per transition
# (docs/PERFORMANCE.md, "Issue 14: hot paths"). Prebuilt once; SQLAlchemy caches its SQL.
_DESTINATION = (
    select(
        func.coalesce(
            bindparam("status_callback", type_=String()),
            select(WebhookEndpoint.url)
            .where(WebhookEndpoint.client_id == bindparam("client_id"))
            .scalar_subquery(),
        ).label("url")
    )
).subquery("destination")
_HAS_URL = func.coalesce(_DESTINATION.c.url, "") != ""
_INSERT_EVENT = insert(CallEvent.__table__).from_select(
    [
        "event_id",
        "call_id",
        "client_id",
        "type",
        "source",
        "dialer_event",
        "payload",
        "created_at",
        "url",
        "delivery",
        "attempts",
        "next_attempt_at",
        "retry_until",
    ],
    select(
        bindparam("event_id", type_=String()),
        bindparam("call_id", type_=Integer()),
        bindparam("client_id", type_=String()),
        bindparam("type", type_=String()),
        bindparam("source", type_=String()),
        bindparam("dialer_event", type_=String()),
        bindparam("payload", type_=Text()),
        bindparam("created_at", type_=UTCDateTime()),
        _DESTINATION.c.url,
        case((_HAS_URL, literal("pending")), else_=literal("none")),
        literal(0),
        case((_HAS_URL, bindparam("created_at", type_=UTCDateTime())), else_=null()),
        case((_HAS_URL, bindparam("retry_until", type_=UTCDateTime())), else_=null()),
    ).select_from(_DESTINATION),
)


def record_event(
    call: Call | Row[Any],
    at: datetime,
    source: str,
    policy: Policy,
    dialer_event: str | None = None,
) -> None:
    """The call's event for the state it just entered: history, and the webhook outbox.

    Written in the transaction of the change itself, so both commit or neither does. Its
    ``url`` is the call's ``status_callback`` or else the client's webhook URL as of this
    transaction (``_destination``); without one the event is only history (``none``).
    """
    if call.id is None:
        db.session.flush()
    db.session.execute(
        _INSERT_EVENT,
        {
            "event_id": f"msg_{secrets.token_urlsafe(18)}",
            "call_id": call.id,
            "client_id": call.client_id,
            "type": lifecycle.event_type(call.state),
            "source": source,
            "dialer_event": dialer_event,
            "payload": event_payload(call, call.state, at),
            "created_at": at,
            "status_callback": call.status_callback or None,
            "retry_until": at + timedelta(seconds=policy.webhook_retry_for),
        },
    )


def transition(
    call: Call,
    target: str,
    *,
    source: str,
    policy: Policy,
    now: datetime,
    end_reason: str | None = None,
    dialer_event: str | None = None,
) -> None:
    """Move ``call`` to ``target`` (409 ``invalid_transition`` if the state machine says
    no), stamp it and record its event in the same transaction."""
    lifecycle.check(call.state, target)
    call.state = target
    call.status = lifecycle.legacy_status(target)
    at = max(now, call.started_at)
    if target == lifecycle.RINGING:
        call.ringing_at = at
    elif target == lifecycle.IN_PROGRESS:
        call.answered_at = at
        if call.time_limit:
            call.talk_deadline = at + timedelta(seconds=call.time_limit + TIME_LIMIT_GRACE)
    if lifecycle.is_final(target):
        call.ended_at = at
        call.end_reason = end_reason or target
        CALLS_ENDED.labels(call.end_reason).inc()
    record_event(call, at, source, policy, dialer_event)
    CALL_TRANSITIONS.labels(target, source).inc()


def _expired(call: Call, policy: Policy) -> None:
    at = call.started_at + timedelta(seconds=policy.max_duration)
    transition(
        call, lifecycle.EXPIRED, source="system", policy=policy, now=at, end_reason="expired"
    )


def _lost(call: Call, policy: Policy, now: datetime) -> None:
    """The dialer holding a live call stopped renewing its lease (it died or lost us).

    A call still queued goes back to the queue (its lease lapses; ``claim_calls`` takes it
    again) until it has been claimed ``max_claims`` times; then, like a call that was
    ringing, it fails; an answered call completes. ``end_reason: dialer-lost``.
    """
    if call.state == lifecycle.QUEUED and call.claims < policy.max_claims:
        return
    target = lifecycle.COMPLETED if call.state == lifecycle.IN_PROGRESS else lifecycle.FAILED
    transition(call, target, source="system", policy=policy, now=now, end_reason="dialer-lost")
    call.lease_expires_at = None


def _settle_one(call: Call, policy: Policy, now: datetime) -> bool:
    """End a live call that is overdue, past its own ``time_limit`` or whose dialer is gone;
    True if it changed."""
    if call.status != "ongoing":
        return False
    if call.started_at <= _cutoff(policy, now):
        _expired(call, policy)
        return True
    if call.talk_deadline is not None and call.talk_deadline <= now:
        transition(
            call,
            lifecycle.COMPLETED,
            source="system",
            policy=policy,
            now=call.talk_deadline,
            end_reason="time-limit",
        )
        return True
    if call.lease_expires_at is not None and call.lease_expires_at <= now:
        state = call.state
        _lost(call, policy, now)
        return call.state != state
    return False


def _expire_overdue(
    policy: Policy, now: datetime, subject: str | None = None, skip_locked: bool = False
) -> int:
    """Settle live calls that are older than the maximum duration (``expired``), past their
    ``time_limit`` (``time-limit``) or whose dialer lease lapsed (``dialer-lost``). Returns
    how many ended."""
    cutoff = _cutoff(policy, now)
    overdue = select(Call).where(
        Call.status == "ongoing",
        or_(
            Call.started_at <= cutoff,
            Call.talk_deadline <= now,
            Call.lease_expires_at <= now,
        ),
    )
    if subject is not None:
        overdue = overdue.where(Call.subject == subject)
    count = 0
    for call in db.session.scalars(overdue.with_for_update(skip_locked=skip_locked)):
        if _settle_one(call, policy, now) and call.status == "ended":
            count += 1
    return count


def _expire_one(call: Call, policy: Policy, now: datetime) -> bool:
    return _settle_one(call, policy, now)


def fingerprint(number: str, options: CallOptions | None = None) -> str:
    extra = options.fingerprint_part() if options is not None else ""
    return hashlib.sha256((number + extra).encode()).hexdigest()


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


_CALLS = Call.__table__
_INSERT_CALL = insert(_CALLS)
# Live calls of a subject, and how many of them must be settled first (the conditions of
# _expire_overdue): one statement where a separate SELECT … FOR UPDATE, nearly always empty,
# preceded the count.
_COUNT_ONGOING = select(
    func.count(),
    func.coalesce(
        func.sum(
            case(
                (
                    or_(
                        _CALLS.c.started_at <= bindparam("cutoff", type_=UTCDateTime()),
                        _CALLS.c.talk_deadline <= bindparam("now", type_=UTCDateTime()),
                        _CALLS.c.lease_expires_at <= bindparam("now", type_=UTCDateTime()),
                    ),
                    1,
                ),
                else_=0,
            )
        ),
        0,
    ),
).where(_CALLS.c.subject == bindparam("subject"), _CALLS.c.status == "ongoing")


def start_call(
    subject: str,
    client_id: str,
    number: str,
    policy: Policy,
    idempotency_key: str | None = None,
    now: datetime | None = None,
    options: CallOptions | None = None,
) -> Started:
    """Queue a call for ``subject`` unless that would exceed their limit.

    ``number`` must already be E.164 and ``options`` checked (``check_options``). A
    repeated ``idempotency_key`` with the same request returns the first call
    (``replayed=True``); with another request it is an error.
    """
    now = now or now_utc()
    options = options or CallOptions()
    request_hash = fingerprint(number, options)
    try:
        own_limit = _lock_user_limit(subject)
        if idempotency_key is not None:
            # Locked: settling it (_expire_one) must not overwrite a concurrent dialer
            # transition of the same call (found in review).
            previous = db.session.scalar(
                select(Call)
                .where(
                    Call.subject == subject,
                    Call.client_id == client_id,
                    Call.idempotency_key == idempotency_key,
                )
                .with_for_update()
            )
            if previous is not None:
                if previous.request_hash != request_hash:
                    raise IdempotencyKeyReused()
                _expire_one(previous, policy, now)
                _commit_keeping_values()
                return Started(previous, replayed=True)
        ongoing, overdue = db.session.execute(
            _COUNT_ONGOING,
            {"subject": subject, "cutoff": _cutoff(policy, now), "now": now},
        ).one()
        if overdue:  # settle them first (under their row locks), then count again
            _expire_overdue(policy, now, subject)
            ongoing = ongoing_count(subject)
        limit = policy.default_limit if own_limit is None else own_limit
        if ongoing >= limit:
            LIMIT_REFUSALS.inc()
            raise RestMaxCallError(
                f"You already have {ongoing} ongoing call(s); the limit is {limit}.",
                extra={"max_ongoing": limit, "ongoing": ongoing},
            )
        values: dict[str, Any] = {
            "token_call": secrets.token_urlsafe(24),
            "subject": subject,
            "client_id": client_id,
            "number": number,
            "status": "ongoing",
            "state": lifecycle.QUEUED,
            "started_at": now,
            "time_limit": options.time_limit or policy.max_duration,
            "ring_timeout": options.ring_timeout or RING_TIMEOUT_DEFAULT,
            "status_callback": options.status_callback,
            "claims": 0,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash if idempotency_key is not None else None,
        }
        # A Core INSERT (the ORM's unit of work cost more than the statement); the Call
        # handed back is a detached copy of the row, as the view and the event need it.
        inserted = cast("CursorResult[Any]", db.session.execute(_INSERT_CALL, values))
        key = inserted.inserted_primary_key
        assert key is not None
        call = Call(**values)
        call.id = key[0]
        record_event(call, now, "app", policy)
        _commit_keeping_values()
        CALLS_STARTED.inc()
        CALL_TRANSITIONS.labels(lifecycle.QUEUED, "app").inc()
        return Started(call, replayed=False)
    except BaseException:
        db.session.rollback()
        raise


def _check_token_call(token_call: str) -> None:
    if not token_call or len(token_call) > 64 or "\x00" in token_call:
        # NUL: PostgreSQL text cannot hold it (psycopg2 raises ValueError, a 500 before this)
        raise ObjectDoesNotExist("No such call.")


def _find(token_call: str, subject: str | None, lock: bool = False) -> Call:
    _check_token_call(token_call)
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


# The API's reads (GET /rest/call): prebuilt statements run outside any transaction, one
# round trip each (docs/PERFORMANCE.md, "Issue 14: hot paths"). A call that must be settled
# first (overdue, past its time_limit, its dialer's lease lapsed) takes the ORM path above,
# which changes it under a transaction; these only read.
_READ_CALL = select(_CALLS).where(
    _CALLS.c.token_call == bindparam("token_call"), _CALLS.c.subject == bindparam("subject")
)
_READ_ONGOING = (
    select(_CALLS)
    .where(_CALLS.c.subject == bindparam("subject"), _CALLS.c.status == "ongoing")
    .order_by(_CALLS.c.started_at, _CALLS.c.id)
)


def _needs_settling(call: Call | Row[Any], policy: Policy, now: datetime) -> bool:
    """Whether ``_settle_one`` might change this call (the conditions of ``_expire_overdue``)."""
    return call.status == "ongoing" and (
        call.started_at <= _cutoff(policy, now)
        or (call.talk_deadline is not None and call.talk_deadline <= now)
        or (call.lease_expires_at is not None and call.lease_expires_at <= now)
    )


def read_call(token_call: str, policy: Policy, subject: str) -> Call | Row[Any]:
    """``get_call`` for the owner's GET, as one read outside any transaction (a row with
    the call's columns) unless the call must be settled first."""
    _check_token_call(token_call)
    with autocommit_read(db.engine) as conn:
        row = conn.execute(_READ_CALL, {"token_call": token_call, "subject": subject}).first()
    if row is None:
        raise ObjectDoesNotExist("No such call.")
    if _needs_settling(row, policy, now_utc()):
        return get_call(token_call, policy, subject)
    return row


def read_ongoing(subject: str, policy: Policy) -> list[Call] | list[Row[Any]]:
    """``list_ongoing`` as one read outside any transaction unless a call must be settled."""
    with autocommit_read(db.engine) as conn:
        rows = list(conn.execute(_READ_ONGOING, {"subject": subject}))
    now = now_utc()
    if any(_needs_settling(row, policy, now) for row in rows):
        return list_ongoing(subject, policy)
    return rows


def end_call(
    token_call: str,
    policy: Policy,
    subject: str | None = None,
    reason: str = "hangup",
    now: datetime | None = None,
    before_commit: Callable[[Call, str], None] | None = None,
) -> Call:
    """Hang up a live call, whatever its state: an answered call completes, one not yet
    answered is canceled. Ending an ended call changes nothing (PUT is idempotent).
    The dialer holding it learns it from its next poll (``dialer.poll``).

    ``before_commit(call, state_before)`` runs under the call's row lock just before the
    COMMIT, so what it adds to the session (the console's audit row) commits with the
    change or not at all."""
    now = now or now_utc()
    try:
        call = _find(token_call, subject, lock=True)
        state_before = call.state
        if not _expire_one(call, policy, now) and call.status == "ongoing":
            target = lifecycle.hang_up_target(call.state)
            # An admin's hang-up, the user's "revoke this app" (the revocation feed), the app's.
            source = {"admin": "admin", "revoked": "system"}.get(reason, "app")
            transition(call, target, source=source, policy=policy, now=now, end_reason=reason)
        if before_commit is not None:
            before_commit(call, state_before)
        _commit_keeping_values()
        return call
    except BaseException:
        db.session.rollback()
        raise


# The owner's hang-up of a live call that needs no settling, as one UPDATE (its row lock
# included) whose RETURNING row makes the event: BEGIN, UPDATE, INSERT event, COMMIT
# (docs/PERFORMANCE.md, "Issue 14: hot paths"). The same change as ``end_call``'s
# ``transition(call, lifecycle.hang_up_target(call.state), …)``.
_HANG_UP = (
    update(_CALLS)
    .where(
        _CALLS.c.token_call == bindparam("b_token_call"),
        _CALLS.c.subject == bindparam("b_subject"),
        _CALLS.c.status == "ongoing",
        # not due for settling (the negation of _needs_settling, NULLs included)
        _CALLS.c.started_at > bindparam("b_cutoff", type_=UTCDateTime()),
        or_(
            _CALLS.c.talk_deadline.is_(None),
            _CALLS.c.talk_deadline > bindparam("b_now", type_=UTCDateTime()),
        ),
        or_(
            _CALLS.c.lease_expires_at.is_(None),
            _CALLS.c.lease_expires_at > bindparam("b_now", type_=UTCDateTime()),
        ),
    )
    .values(
        state=case(
            (
                _CALLS.c.state == lifecycle.IN_PROGRESS,
                lifecycle.hang_up_target(lifecycle.IN_PROGRESS),
            ),
            else_=lifecycle.hang_up_target(lifecycle.QUEUED),
        ),
        status=lifecycle.legacy_status(lifecycle.COMPLETED),
        ended_at=case(
            (_CALLS.c.started_at > bindparam("b_now", type_=UTCDateTime()), _CALLS.c.started_at),
            else_=bindparam("b_now", type_=UTCDateTime()),
        ),
        end_reason=bindparam("b_reason", type_=String()),
    )
    .returning(*_CALLS.c)
)


def hang_up(
    token_call: str, policy: Policy, subject: str, reason: str = "hangup"
) -> Call | Row[Any]:
    """``end_call`` for the owner's ``PUT /rest/call``: a live call that needs no settling
    ends in one statement; anything else (ended already, overdue, missing) takes
    ``end_call``, which answers it as before."""
    _check_token_call(token_call)
    now = now_utc()
    try:
        row = db.session.execute(
            _HANG_UP,
            {
                "b_token_call": token_call,
                "b_subject": subject,
                "b_cutoff": _cutoff(policy, now),
                "b_now": now,
                "b_reason": reason,
            },
        ).first()
        if row is None:
            db.session.rollback()
            return end_call(token_call, policy, subject=subject, reason=reason, now=now)
        CALLS_ENDED.labels(reason).inc()
        record_event(row, row.ended_at, "app", policy)
        db.session.commit()
        CALL_TRANSITIONS.labels(row.state, "app").inc()
        return row
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
    elif status in lifecycle.STATES:
        query = query.where(Call.state == status)
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


def set_limit(
    subject: str,
    max_ongoing: int | None,
    before_commit: Callable[[int | None], None] | None = None,
) -> None:
    """Set (or, with ``None``, clear) a user's own limit. Lowering it ends no call.

    ``before_commit(previous)`` (the user's own limit before, ``None``: the default) runs
    under the user's row lock just before the COMMIT (the console's audit row)."""
    if max_ongoing is not None and not 0 <= max_ongoing <= MAX_LIMIT:
        raise InvalidRequest(f"max_ongoing must be an integer from 0 to {MAX_LIMIT}.")
    try:
        user = _lock_user(subject)
        previous = user.max_ongoing
        user.max_ongoing = max_ongoing
        user.updated_at = now_utc()
        if before_commit is not None:
            before_commit(previous)
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


def call_events(call: Call) -> list[CallEvent]:
    return list(
        db.session.scalars(
            select(CallEvent).where(CallEvent.call_id == call.id).order_by(CallEvent.id)
        )
    )


def dialer_event_applied(call: Call, event: str) -> bool:
    """Whether the dialer's ``event`` already moved this call (a retry changes nothing)."""
    return bool(
        db.session.scalar(
            select(
                exists().where(
                    CallEvent.call_id == call.id,
                    CallEvent.source == "dialer",
                    CallEvent.dialer_event == event,
                )
            )
        )
    )


def as_dict(call: Call | Row[Any]) -> dict[str, Any]:
    """The call as clients see it: the original's fields first, then the lifecycle's.

    ``duration`` counts from the answer (0 for a call never answered), once it ended.
    """
    duration = None
    if call.ended_at is not None:
        start = call.answered_at or call.ended_at
        duration = max(0, int((call.ended_at - start).total_seconds()))
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
        "state": call.state,
        "ringing_at": iso(call.ringing_at),
        "answered_at": iso(call.answered_at),
        "time_limit": call.time_limit,
        "ring_timeout": call.ring_timeout,
        "status_callback": call.status_callback,
    }


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------
# The operator's console (call_api/web/console.py): every user's calls and a few counts
# ---------------------------------------------------------------------------------------

# Which calls a console list shows: any, live or ended (the original's status), or a state.
HISTORY_STATES = ("", "ongoing", "ended", *lifecycle.STATES)


@dataclass(frozen=True)
class CallFilter:
    """The console's history filters; empty values do not filter. ``since``/``until`` bound
    ``started_at`` (``until`` excluded)."""

    subject: str = ""
    client_id: str = ""
    state: str = ""
    since: datetime | None = None
    until: datetime | None = None


def _paginate(query: Any, page: int, per_page: int) -> tuple[list[Any], int]:
    total = int(db.session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = db.session.scalars(query.offset((page - 1) * per_page).limit(per_page))
    return list(rows), total


def search_calls(
    filters: CallFilter, policy: Policy, page: int = 1, per_page: int = 20
) -> tuple[list[Call], int]:
    """Every user's calls matching ``filters``, newest first, and how many there are.

    Overdue calls are settled first (without waiting on rows another request holds), so a
    call past its end never shows as live."""
    if _expire_overdue(policy, now_utc(), skip_locked=True):
        db.session.commit()
    query = select(Call)
    if filters.subject:
        query = query.where(Call.subject == filters.subject)
    if filters.client_id:
        query = query.where(Call.client_id == filters.client_id)
    if filters.state in ("ongoing", "ended"):
        query = query.where(Call.status == filters.state)
    elif filters.state:
        query = query.where(Call.state == filters.state)
    if filters.since is not None:
        query = query.where(Call.started_at >= filters.since)
    if filters.until is not None:
        query = query.where(Call.started_at < filters.until)
    rows, total = _paginate(query.order_by(Call.started_at.desc(), Call.id.desc()), page, per_page)
    db.session.commit()  # end the read transaction (on SQLite it holds the write lock)
    return rows, total


def live_by_state() -> dict[str, int]:
    """Live calls by state (every live state, 0 when none), as ``/metrics`` counts them."""
    found = dict(
        db.session.execute(
            select(Call.state, func.count()).where(Call.status == "ongoing").group_by(Call.state)
        ).all()
    )
    return {state: int(found.get(state, 0)) for state in lifecycle.LIVE_STATES}


def _minute_of(column: Any) -> Any:
    """``YYYY-MM-DD HH:MM`` of a UTC timestamp column, in SQL (grouped by the database)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24:MI")
    return func.strftime("%Y-%m-%d %H:%M", column)


def ended_per_minute(
    policy: Policy, now: datetime | None = None, minutes: int = 60
) -> list[tuple[datetime, dict[str, int]]]:
    """Calls that ended in each of the last ``minutes`` minutes (the current one included),
    by final state, oldest minute first; every minute and every final state is present.

    Counted from the ``calls`` table (``ended_at``), so every worker and replica sees the
    same figures. A call ends at most ``max_duration`` after it started, which bounds
    ``started_at`` too: the query stays on the ``(status, started_at)`` index."""
    now = now or now_utc()
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    minute = _minute_of(Call.ended_at)
    rows = db.session.execute(
        select(minute, Call.state, func.count())
        .where(
            Call.status == "ended",
            Call.started_at >= first - timedelta(seconds=policy.max_duration + 60),
            Call.ended_at >= first,
        )
        .group_by(minute, Call.state)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for label, state, count in rows:
        counts.setdefault(str(label), {})[state] = int(count)
    series = []
    for i in range(minutes):
        at = first + timedelta(minutes=i)
        found = counts.get(at.strftime("%Y-%m-%d %H:%M"), {})
        series.append((at, {state: found.get(state, 0) for state in lifecycle.FINAL_STATES}))
    return series


def webhook_backlog(now: datetime | None = None) -> dict[str, Any]:
    """Events waiting for delivery (``pending``), given up (``failed``), and the age in
    seconds of the oldest pending one (0: none), as ``/metrics`` shows them."""
    now = now or now_utc()
    found = dict(
        db.session.execute(
            select(CallEvent.delivery, func.count())
            .where(CallEvent.delivery.in_(("pending", "failed")))
            .group_by(CallEvent.delivery)
        ).all()
    )
    oldest = db.session.scalar(
        select(func.min(CallEvent.created_at)).where(CallEvent.delivery == "pending")
    )
    if oldest is not None and oldest.tzinfo is None:  # func.min loses the column's type
        oldest = oldest.replace(tzinfo=UTC)
    return {
        "pending": int(found.get("pending", 0)),
        "failed": int(found.get("failed", 0)),
        "oldest_pending_seconds": max(0, int((now - oldest).total_seconds())) if oldest else 0,
    }


def undelivered_events(
    page: int = 1, per_page: int = 20
) -> tuple[list[tuple[CallEvent, str]], int]:
    """Events still ``pending`` or ``failed`` with their call's ``token_call``, oldest
    first: what an operator may want to look at or redeliver."""
    query = (
        select(CallEvent, Call.token_call)
        .join(Call, Call.id == CallEvent.call_id)
        .where(CallEvent.delivery.in_(("pending", "failed")))
        .order_by(CallEvent.created_at, CallEvent.id)
    )
    total = int(db.session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = [
        (event, str(token))
        for event, token in db.session.execute(
            query.offset((page - 1) * per_page).limit(per_page)
        ).all()
    ]
    db.session.commit()
    return rows, total
