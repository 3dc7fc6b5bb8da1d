"""Signed status webhooks: the apps' endpoints (URL + secret) and the delivery of the outbox.

Every transition writes a ``CallEvent`` in its own transaction (``calls.record_event``): the
outbox. A worker (``call_api.worker``) delivers it in three steps, each short:

1. ``claim``: one transaction takes the due events under a lease (``locked_by``,
   ``locked_until``) and commits. PostgreSQL's ``FOR UPDATE SKIP LOCKED`` lets any number of
   workers claim at once without waiting for each other or taking the same row; on SQLite
   every transaction is ``BEGIN IMMEDIATE``, so claims are serialised. Only the earliest
   pending event of each call can be claimed, so a call's events go out strictly in order,
   one at a time, and a batch never holds two events of one call.
2. ``deliver``: the POST, outside any transaction (a slow receiver holds no lock or
   connection), signed per Standard Webhooks with the client's secret, to the address the
   SSRF check just resolved (``ssrf.resolve_for_delivery``), redirects not followed.
3. ``record``: the outcome, applied only while this claim still holds the lease: a worker
   that lost it (it was too slow, and another took the event) must not overwrite the
   newer state. 2xx → ``delivered``; otherwise retried with exponential backoff and equal
   jitter until ``retry_until`` has passed, then ``failed``.

This is at-least-once: a worker killed after the POST but before ``record`` leaves the
lease to expire, and the event is sent again. Receivers deduplicate on ``webhook-id``.
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import urllib3
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from standardwebhooks.webhooks import Webhook

from shared.errors import Conflict, InvalidRequest, ObjectDoesNotExist
from shared.pinned import pinned_request

from .calls import _destination, _find, iso, now_utc
from .extensions import db
from .models import Call, CallEvent, DeliveryAttempt, WebhookEndpoint
from .ssrf import check_webhook_url, resolve_for_delivery

CLIENT_ID = re.compile(r"[A-Za-z0-9._~:-]{1,64}")
SECRET_PREFIX = "whsec_"
MAX_ERROR = 500
USER_AGENT = "ClickCall-Webhooks/1"
# Addresses of one host tried in turn when connecting fails (CALL_WEBHOOK_LEASE_SECONDS must
# outlast this many timeouts: config.py checks it is more than twice CALL_WEBHOOK_TIMEOUT).
MAX_ADDRESSES = 2


# ---------------------------------------------------------------------------------------
# Endpoints: a client's URL and signing secret
# ---------------------------------------------------------------------------------------


def new_secret() -> str:
    """``whsec_`` + base64 of 24 random bytes: the Standard Webhooks secret format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def check_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise InvalidRequest(
            "The client id must be 1–64 characters: letters, digits, '.', '_', '~', ':' or '-'."
        )
    return client_id


@dataclass(frozen=True)
class EndpointChange:
    endpoint: WebhookEndpoint
    created: bool
    secret: str | None  # shown once: on creation or rotation, else None


def endpoint_dict(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    """The endpoint as the admin API and CLI show it; the secret only when just issued."""
    return {
        "client_id": endpoint.client_id,
        "url": endpoint.url,
        "secret": secret,
        "created_at": iso(endpoint.created_at),
        "updated_at": iso(endpoint.updated_at),
    }


def set_endpoint(
    client_id: str, url: str | None, config: Mapping[str, Any], rotate_secret: bool = False
) -> EndpointChange:
    """Register or change ``client_id``'s status-callback URL (``None``: none, the client
    gives per-call ``status_callback`` URLs only); a new client gets a new secret, and so
    does one that asks for ``rotate_secret`` (the old one stops signing at once).

    Events still pending for the old URL follow to the new one: they are retried where the
    app now listens, not at the address it just said was wrong.
    """
    client_id = check_client_id(client_id)
    if url is not None:
        url = check_webhook_url(url, config)
    try:
        return _set_endpoint(client_id, url, rotate_secret)
    except IntegrityError:  # another request created it in between: now it is an update
        return _set_endpoint(client_id, url, rotate_secret)


def _set_endpoint(client_id: str, url: str | None, rotate_secret: bool) -> EndpointChange:
    now = now_utc()
    try:
        endpoint = db.session.scalar(
            select(WebhookEndpoint).where(WebhookEndpoint.client_id == client_id).with_for_update()
        )
        created = endpoint is None
        secret = new_secret() if created or rotate_secret else None
        if endpoint is None:
            endpoint = WebhookEndpoint(
                client_id=client_id, url=url, secret=secret, created_at=now, updated_at=now
            )
            db.session.add(endpoint)
        else:
            old_url = endpoint.url
            endpoint.url = url
            if secret is not None:
                endpoint.secret = secret
            endpoint.updated_at = now
            if old_url and url and old_url != url:
                db.session.execute(
                    update(CallEvent)
                    .where(
                        CallEvent.client_id == client_id,
                        CallEvent.delivery == "pending",
                        CallEvent.url == old_url,
                    )
                    .values(url=url)
                )
        db.session.commit()
        return EndpointChange(endpoint, created, secret)
    except BaseException:
        db.session.rollback()
        raise


def get_endpoint(client_id: str) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, check_client_id(client_id))
    if endpoint is None:
        raise ObjectDoesNotExist("This client has no webhook endpoint.")
    return endpoint


def delete_endpoint(client_id: str) -> None:
    """Forget the URL and the secret. Events already written keep their URL but can no
    longer be signed: they fail their attempts (and are retried, in case the client
    registers again) until their retry window ends."""
    try:
        db.session.delete(get_endpoint(client_id))
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


# ---------------------------------------------------------------------------------------
# What the admin API shows: a call's events with their attempts; redelivery
# ---------------------------------------------------------------------------------------


def _attempt_dict(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "attempted_at": iso(attempt.attempted_at),
        "worker": attempt.worker,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "duration_ms": attempt.duration_ms,
    }


def event_dict(event: CallEvent, attempts: list[DeliveryAttempt]) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "type": event.type,
        "source": event.source,
        "created_at": iso(event.created_at),
        "url": event.url,
        "delivery": event.delivery,
        "attempts": event.attempts,
        "next_attempt_at": iso(event.next_attempt_at),
        "delivered_at": iso(event.delivered_at),
        "last_status": event.last_status,
        "last_error": event.last_error,
        "payload": json.loads(event.payload),
        "attempt_log": [_attempt_dict(a) for a in attempts],
    }


def _attempts_of(event_ids: list[int]) -> dict[int, list[DeliveryAttempt]]:
    log: dict[int, list[DeliveryAttempt]] = {i: [] for i in event_ids}
    if event_ids:
        rows = db.session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.event_id.in_(event_ids))
            .order_by(DeliveryAttempt.id)
        )
        for attempt in rows:
            log[attempt.event_id].append(attempt)
    return log


def events_for_call(token_call: str) -> dict[str, Any]:
    """``{"token_call", "events": [event with its attempt_log]}``, oldest event first."""
    call = _find(token_call, None)
    events = list(
        db.session.scalars(
            select(CallEvent).where(CallEvent.call_id == call.id).order_by(CallEvent.id)
        )
    )
    log = _attempts_of([e.id for e in events])
    db.session.commit()  # end the read transaction (on SQLite it holds the write lock)
    return {"token_call": call.token_call, "events": [event_dict(e, log[e.id]) for e in events]}


def redeliver(
    event_id: str, config: Mapping[str, Any], now: datetime | None = None
) -> dict[str, Any]:
    """Send an event again, whatever became of it: pending now, due now, a fresh retry
    window and attempt count (``attempt_log`` keeps every earlier attempt).

    It goes where the call's events go today (the call's ``status_callback``, else the
    client's current URL), so an app that fixed its URL gets what it missed. 409 when
    there is no URL, or while a worker is sending it this very moment (its lease runs).
    """
    now = now or now_utc()
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 40 or "\x00" in event_id:
        raise ObjectDoesNotExist("No such event.")
    try:
        event = db.session.scalar(
            select(CallEvent).where(CallEvent.event_id == event_id).with_for_update()
        )
        if event is None:
            raise ObjectDoesNotExist("No such event.")
        if event.locked_until is not None and event.locked_until > now:
            raise Conflict("A worker is delivering this event right now; retry shortly.")
        call = db.session.get(Call, event.call_id)
        url = _destination(call) if call is not None else None
        if not url:
            raise Conflict("This event has nowhere to go: the client has no webhook URL.")
        event.url = url
        event.delivery = "pending"
        event.attempts = 0
        event.next_attempt_at = now
        event.retry_until = now + timedelta(seconds=config["CALL_WEBHOOK_RETRY_FOR"])
        event.locked_by = None
        event.locked_until = None
        event.delivered_at = None
        db.session.flush()
        body = event_dict(event, _attempts_of([event.id])[event.id])
        db.session.commit()
        return body
    except BaseException:
        db.session.rollback()
        raise


# ---------------------------------------------------------------------------------------
# Delivery: claim, deliver, record
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The worker's settings (``CALL_WEBHOOK_*``), read once from the app config."""

    timeout: float
    lease_seconds: float
    backoff_base: float
    backoff_max: float
    batch: int
    poll_interval: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        return cls(
            timeout=float(config["CALL_WEBHOOK_TIMEOUT"]),
            lease_seconds=float(config["CALL_WEBHOOK_LEASE_SECONDS"]),
            backoff_base=float(config["CALL_WEBHOOK_BACKOFF_BASE"]),
            backoff_max=float(config["CALL_WEBHOOK_BACKOFF_MAX"]),
            batch=int(config["CALL_WEBHOOK_BATCH"]),
            poll_interval=float(config["CALL_WEBHOOK_POLL_INTERVAL"]),
        )


@dataclass(frozen=True)
class Claim:
    """A claimed event, copied out of the session: the POST runs with no database at hand."""

    id: int
    event_id: str
    url: str
    payload: str
    client_id: str
    attempts: int  # before this attempt
    retry_until: datetime
    secret: str | None  # the client's signing secret; None: it has no endpoint
    lease: str  # this claim's ``locked_by``: the worker's id and a nonce


@dataclass(frozen=True)
class Outcome:
    """One attempt: an HTTP status, or an error (no response at all)."""

    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def lease_token(worker_id: str) -> str:
    """A claim's ``locked_by``: the worker and a nonce, so that even the same worker's later
    claim of the same event is told apart from this one."""
    return f"{worker_id[:55]}#{secrets.token_hex(4)}"


def claim(worker_id: str, settings: Settings, now: datetime | None = None) -> list[Claim]:
    """Take up to ``settings.batch`` due events under a lease, oldest first, at most one per
    call (its earliest pending one), and commit. See the module docstring."""
    now = now or now_utc()
    earlier = aliased(CallEvent)
    earlier_pending = exists().where(
        earlier.call_id == CallEvent.call_id,
        earlier.id < CallEvent.id,
        earlier.delivery == "pending",
    )
    due = (
        select(CallEvent)
        .where(
            CallEvent.delivery == "pending",
            CallEvent.next_attempt_at <= now,
            or_(CallEvent.locked_until.is_(None), CallEvent.locked_until < now),
            ~earlier_pending,
        )
        .order_by(CallEvent.id)
        .limit(settings.batch)
        .with_for_update(skip_locked=True, of=CallEvent)
    )
    lease = lease_token(worker_id)
    until = now + timedelta(seconds=settings.lease_seconds)
    try:
        events = list(db.session.scalars(due))
        secrets_by_client: dict[str, str] = {}
        clients = {e.client_id for e in events}
        if clients:
            rows = db.session.execute(
                select(WebhookEndpoint.client_id, WebhookEndpoint.secret).where(
                    WebhookEndpoint.client_id.in_(clients)
                )
            )
            secrets_by_client = {client: secret for client, secret in rows}
        claims = []
        for event in events:
            event.locked_by = lease
            event.locked_until = until
            claims.append(
                Claim(
                    id=event.id,
                    event_id=event.event_id,
                    url=event.url or "",
                    payload=event.payload,
                    client_id=event.client_id,
                    attempts=event.attempts,
                    retry_until=event.retry_until or now,
                    secret=secrets_by_client.get(event.client_id),
                    lease=lease,
                )
            )
        db.session.commit()
        return claims
    except BaseException:
        db.session.rollback()
        raise


def sign(secret: str, event_id: str, at: datetime, payload: str) -> dict[str, str]:
    """The Standard Webhooks headers for ``payload`` sent at ``at``."""
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, at, payload),
    }


def _error_text(exc: BaseException) -> str:
    # NewConnectionError is a kind of (connect) TimeoutError in urllib3: test it first.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return f"could not connect: {exc.__context__ or exc}"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"TLS error: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _post(
    scheme: str, address: str, port: int, host: str, path: str, headers: dict, body: bytes, t: float
) -> int:
    """One POST to ``address`` (already checked), naming ``host`` in Host and TLS."""
    with pinned_request(
        "POST", scheme, address, port, host, path, headers=headers, timeout=t, body=body
    ) as response:
        return int(response.status)


def deliver(
    item: Claim,
    config: Mapping[str, Any],
    settings: Settings,
    clock: Callable[[], datetime] = now_utc,
) -> Outcome:
    """POST one claimed event and say what happened. Never raises: whatever goes wrong with
    one event (the receiver, its DNS, even a bug) is that event's outcome, retried like any
    failure, so one bad event cannot stop the worker's rounds for all the others."""
    started = time.monotonic()
    at = clock()

    def done(status: int | None, error: str | None) -> Outcome:
        elapsed = int((time.monotonic() - started) * 1000)
        return Outcome(at, status, error[:MAX_ERROR] if error else None, elapsed)

    try:
        return _deliver(item, config, settings, at, done)
    except Exception as exc:
        return done(None, f"internal error: {type(exc).__name__}: {exc}")


def _deliver(
    item: Claim,
    config: Mapping[str, Any],
    settings: Settings,
    at: datetime,
    done: Callable[[int | None, str | None], Outcome],
) -> Outcome:
    if item.secret is None:
        return done(
            None,
            f"client {item.client_id} has no webhook endpoint (no signing secret): register "
            "one with PUT /admin/clients/<client_id>/webhook or `call-api webhooks set`",
        )
    try:
        target = resolve_for_delivery(item.url, config)
    except InvalidRequest as exc:
        return done(None, f"refused: {exc.description}")
    headers = {
        "Host": target.host_header,
        "User-Agent": USER_AGENT,
        **sign(item.secret, item.event_id, at, item.payload),
    }
    body = item.payload.encode("utf-8")
    error = "no address"
    for address in target.addresses[:MAX_ADDRESSES]:
        try:
            status = _post(
                target.scheme,
                address,
                target.port,
                target.host,
                target.path,
                headers,
                body,
                settings.timeout,
            )
        except urllib3.exceptions.NewConnectionError as exc:
            error = _error_text(exc)  # refused or unreachable: nothing was sent, try the next
            continue
        except Exception as exc:  # the receiver's fault, whatever it is, is the outcome
            return done(None, _error_text(exc))
        if 200 <= status < 300:
            return done(status, None)
        if 300 <= status < 400:
            return done(status, f"HTTP {status}: redirects are not followed")
        return done(status, f"HTTP {status}")
    return done(None, error)


def backoff_delay(
    attempts: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: exponential
    (``base * 2**(attempts-1)``, at most ``cap``) with equal jitter (half of it fixed,
    half random), so retries spread out but never come back sooner than half the step."""
    step = min(cap, base * 2 ** min(max(attempts - 1, 0), 62))
    return step / 2 + rand() * step / 2


def record(
    item: Claim,
    outcome: Outcome,
    worker_id: str,
    settings: Settings,
    now: datetime | None = None,
    rand: Callable[[], float] = random.random,
) -> bool:
    """Apply ``outcome`` to the event if ``item``'s lease still holds it; log the attempt
    either way (it happened). True if the event was updated. Commits."""
    now = now or now_utc()
    attempts = item.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status": outcome.status_code,
        "last_error": outcome.error,
        "locked_by": None,
        "locked_until": None,
    }
    if outcome.delivered:
        values.update(delivery="delivered", delivered_at=now, next_attempt_at=None)
    elif now >= item.retry_until:
        values.update(delivery="failed", next_attempt_at=None)
    else:
        delay = backoff_delay(attempts, settings.backoff_base, settings.backoff_max, rand)
        # The last try comes at the end of the window, not up to BACKOFF_MAX after it.
        values["next_attempt_at"] = min(now + timedelta(seconds=delay), item.retry_until)
    try:
        db.session.add(
            DeliveryAttempt(
                event_id=item.id,
                attempted_at=outcome.attempted_at,
                worker=worker_id[:64],
                url=item.url[:2048],
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
        )
        result = db.session.execute(
            update(CallEvent)
            .where(and_(CallEvent.id == item.id, CallEvent.locked_by == item.lease))
            .values(**values)
        )
        db.session.commit()
        return bool(result.rowcount)  # type: ignore[attr-defined]
    except BaseException:
        db.session.rollback()
        raise
