"""The dialer's side of a call: claim queued calls under a lease, report what happens.

A dialer is a phone system (the simulator in development, a SIP dialer in production)
with its own OAuth client (``client_credentials``, scope ``dialer``). Several replicas may
run: each names itself with a ``dialer_id``, and a call is held by one (client, dialer_id)
while its lease runs. Every poll renews the leases of the calls the dialer holds; a dialer
that stops polling loses them (``calls._lost``: requeued, or failed by rule).

On PostgreSQL the claim is ``SELECT … FOR UPDATE SKIP LOCKED``, so replicas never wait for
each other nor take the same call; on SQLite every transaction is ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from shared.errors import InvalidRequest, LeaseLost, ObjectDoesNotExist

from . import lifecycle
from .calls import (
    Policy,
    _commit_keeping_values,
    _expire_overdue,
    _find,
    as_dict,
    dialer_event_applied,
    iso,
    now_utc,
    transition,
)
from .extensions import db
from .models import Call

DIALER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_BATCH = 50
MAX_WAIT = 25.0  # seconds a poll may hold a request open
POLL_STEP = 0.2  # seconds between looks while a poll waits


@dataclass
class PollResult:
    claimed: list[Call] = field(default_factory=list)
    ended: list[Call] = field(default_factory=list)
    held: list[Call] = field(default_factory=list)  # live calls whose lease this poll renewed

    def __bool__(self) -> bool:
        return bool(self.claimed or self.ended)


def check_dialer_id(value: object) -> str:
    if not isinstance(value, str) or not DIALER_ID.fullmatch(value):
        raise InvalidRequest(
            "dialer_id must be 1–128 characters: letters, digits, '.', '_', ':' or '-'."
        )
    return value


def _held_by(client_id: str, dialer_id: str, now: datetime) -> Any:
    """Calls this (client, dialer_id) holds: a lapsed lease is not renewed, even for a dialer
    that comes back under the same id (the call was requeued or is being settled)."""
    return (
        (Call.dialer_client == client_id)
        & (Call.dialer_id == dialer_id)
        & (Call.lease_expires_at > now)
    )


def _poll_once(
    client_id: str, dialer_id: str, max_calls: int, policy: Policy, now: datetime
) -> PollResult:
    lease_until = now + timedelta(seconds=policy.lease_seconds)
    result = PollResult()
    try:
        _expire_overdue(policy, now, skip_locked=True)
        held = db.session.scalars(
            select(Call)
            .where(_held_by(client_id, dialer_id, now))
            .order_by(Call.id)
            .with_for_update()
        )
        for call in held:
            if call.status == "ended":
                call.lease_expires_at = None  # told once: the dialer stops working on it
                result.ended.append(call)
            else:
                call.lease_expires_at = lease_until
                result.held.append(call)
        if max_calls:
            claimable = (
                select(Call)
                .where(
                    Call.state == lifecycle.QUEUED,
                    or_(Call.lease_expires_at.is_(None), Call.lease_expires_at <= now),
                )
                .order_by(Call.id)
                .limit(max_calls)
                .with_for_update(skip_locked=True)
            )
            for call in db.session.scalars(claimable):
                call.dialer_client = client_id
                call.dialer_id = dialer_id
                call.lease_expires_at = lease_until
                call.claims += 1
                result.claimed.append(call)
        _commit_keeping_values()
        return result
    except BaseException:
        db.session.rollback()
        raise


def poll(client_id: str, dialer_id: str, max_calls: int, wait: float, policy: Policy) -> PollResult:
    """Renew this dialer's leases, tell it which of its calls ended (the app hung up, an
    admin ended it) and claim up to ``max_calls`` queued calls. With ``wait``, hold the
    request up to that many seconds until there is something to say (a long poll), so
    a dialer learns of a hang-up within ``POLL_STEP`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        result = _poll_once(client_id, dialer_id, max_calls, policy, now_utc())
        if result or time.monotonic() + POLL_STEP > deadline:
            return result
        db.session.remove()  # no connection held while waiting
        time.sleep(POLL_STEP)


def report(
    client_id: str, dialer_id: str, token_call: str, event: object, policy: Policy
) -> tuple[Call, bool]:
    """Apply the dialer's ``event`` to a call it holds; returns (call, changed).

    A retried event changes nothing (200, unchanged); an event the state machine does not
    allow now is 409 ``invalid_transition`` (say ``answered`` after the app hung up: the
    dialer should drop the call); a call the dialer does not hold is 409 ``lease_lost``.
    """
    target = lifecycle.dialer_target(event)
    event = str(event)
    now = now_utc()
    try:
        call = _find(token_call, None, lock=True)
        if call.dialer_client != client_id:
            raise ObjectDoesNotExist("No such call.")
        if dialer_event_applied(call, event):
            db.session.rollback()
            return call, False
        holds = (
            call.dialer_id == dialer_id
            and call.lease_expires_at is not None
            and call.lease_expires_at > now
        )
        if call.status == "ongoing" and not holds:
            raise LeaseLost(
                f"Dialer {dialer_id!r} does not hold this call's lease (it expired or another "
                "dialer holds it); drop the call.",
                extra={"state": call.state},
            )
        transition(
            call,
            target,
            source="dialer",
            policy=policy,
            now=now,
            end_reason=lifecycle.DIALER_END_REASONS.get(event),
            dialer_event=event,
        )
        if lifecycle.is_final(call.state):
            call.lease_expires_at = None  # the dialer knows: nothing to tell it in a poll
        else:
            call.lease_expires_at = now + timedelta(seconds=policy.lease_seconds)
        _commit_keeping_values()
        return call, True
    except BaseException:
        db.session.rollback()
        raise


def claimed_dict(call: Call) -> dict[str, Any]:
    """A claimed call as the dialer needs it: the call plus its lease."""
    body = as_dict(call)
    body["dialer_id"] = call.dialer_id
    body["lease_expires_at"] = iso(call.lease_expires_at)
    body["claims"] = call.claims
    return body
