"""The call API's tables: one row per user (the lock and the limit) and the calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.audit import AuditEventMixin
from shared.dpop import DPoPJtiMixin

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class CallUser(db.Model):  # type: ignore[name-defined,misc]
    """One row per subject: locked while a call starts, so the limit holds under concurrency."""

    __tablename__ = "call_users"

    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    max_ongoing: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Call(db.Model):  # type: ignore[name-defined,misc]
    """A call and its lifecycle (``call_api.lifecycle``).

    ``status`` is the original's ``ongoing`` | ``ended``, derived from ``state`` and kept as
    a column because the limit counts it under the user's row lock. The dialer's lease:
    ``dialer_client`` + ``dialer_id`` hold the call while ``lease_expires_at`` is set and in
    the future; ``claims`` counts how many times a dialer took it from the queue.
    """

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("subject", "client_id", "idempotency_key", name="uq_calls_idempotency"),
        Index("ix_calls_subject_status", "subject", "status", "started_at"),
        Index("ix_calls_status_started", "status", "started_at"),
        Index("ix_calls_state_lease", "state", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_call: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    subject: Mapped[str] = mapped_column(
        String(255), ForeignKey("call_users.subject", ondelete="CASCADE"), nullable=False
    )
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    number: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="ongoing")
    state: Mapped[str] = mapped_column(String(12), nullable=False, default="queued")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    ringing_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    time_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # answered_at + time_limit + a grace: past it the API completes the call itself.
    talk_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ring_timeout: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status_callback: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    dialer_client: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dialer_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claims: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CallEvent(db.Model):  # type: ignore[name-defined,misc]
    """One transition of one call: its history and the webhook outbox in one row.

    Written in the transaction that changes the call, so no change is without its event and
    no event without its change. ``delivery``: ``pending`` (a worker will POST it to
    ``url``), ``delivered``, ``failed`` (gave up after ``retry_until``) or ``none`` (no URL
    was registered when it happened). ``id`` orders a call's events.
    """

    __tablename__ = "call_events"
    __table_args__ = (
        Index("ix_call_events_call", "call_id", "id"),
        Index("ix_call_events_due", "delivery", "next_attempt_at"),
        # The worker's claim looks only at pending events: without these partial indexes it
        # scanned every delivered row from the lowest id (27 ms per claim at 70k rows, and a
        # quadratic plan on stale statistics after an outage; docs/PERFORMANCE.md).
        Index(
            "ix_call_events_pending",
            "id",
            postgresql_where=text("delivery = 'pending'"),
            sqlite_where=text("delivery = 'pending'"),
        ),
        Index(
            "ix_call_events_call_pending",
            "call_id",
            "id",
            postgresql_where=text("delivery = 'pending'"),
            sqlite_where=text("delivery = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    call_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("calls.id", ondelete="CASCADE"), nullable=False
    )
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    source: Mapped[str] = mapped_column(String(10), nullable=False)
    dialer_event: Mapped[str | None] = mapped_column(String(16), nullable=True)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    delivery: Mapped[str] = mapped_column(String(10), nullable=False, default="none")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retry_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class WebhookEndpoint(db.Model):  # type: ignore[name-defined,misc]
    """A client's status-callback URL and signing secret (``whsec_…``).

    The secret signs (HMAC), so it is kept as issued, not hashed; it is shown once.
    ``url`` may be empty: a client that only gives per-call ``status_callback`` URLs.
    """

    __tablename__ = "webhook_endpoints"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    secret: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class DeliveryAttempt(db.Model):  # type: ignore[name-defined,misc]
    """One POST of one event (the admin API shows them)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_event", "event_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("call_events.id", ondelete="CASCADE"), nullable=False
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    worker: Mapped[str] = mapped_column(String(64), nullable=False)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class AuditEvent(AuditEventMixin, db.Model):  # type: ignore[name-defined,misc]
    """One operator-console action: who (the web session's subject and username), what
    (``action`` on ``target``, ``details`` as JSON, never a secret), when, from where (the
    client address per ``TRUSTED_PROXIES``) and how it went (``outcome``). The columns and
    indexes are ``shared.audit``'s; written in the action's own transaction where the
    action allows it (``call_api.audit``)."""

    __tablename__ = "audit_events"


class WebSession(db.Model):  # type: ignore[name-defined,misc]
    """A person signed in to the call API's pages (``call_api.web``), as an OAuth client.

    The browser holds only a random session id (cookie ``clickcall_calls_session``); the
    row is found by its SHA-256 (``secret_hash``), so a copy of this table cannot be
    replayed as cookies. The tokens are encrypted with a key derived from
    ``CALL_SECRET_KEY``; they never leave the server. ``id`` is a public handle (logs,
    audit), not a credential.
    """

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_subject", "subject"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    username: Mapped[str] = mapped_column(String(255), nullable=False)
    scope: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    access_token: Mapped[str] = mapped_column(Text, nullable=False)
    refresh_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    access_expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    csrf_secret: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class DPoPJti(DPoPJtiMixin, db.Model):  # type: ignore[name-defined,misc]
    """DPoP proofs already presented with DPoP-bound access tokens (RFC 9449 §11.1), shared
    by the replicas (shared/dpop.py; call_api/dpop.py)."""

    __tablename__ = "dpop_jtis"
