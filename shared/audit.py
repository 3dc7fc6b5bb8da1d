"""The audit trail's generic part, shared by both services' operator consoles.

Each service keeps its own ``audit_events`` table (its own model, declared with
:class:`AuditEventMixin`, and its own migration) and a small ``audit.record(entry)`` that
calls :func:`record` here with its session and model. What is shared is the shape of an
entry, how it is stored (in the caller's transaction: the row is added, not committed), how
it is logged (one JSON line on ``clickcall.<service>.audit``, once the row is committed), how
a stored row is shown, and how the console lists them (newest first, filtered by actor and
action, paginated).

An entry never carries a secret: :func:`clean_details` masks any detail whose key names one
(password, secret, token, …) before it is stored or logged, as a last line of defence; the
callers simply don't put them there.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, Text, event, func, select
from sqlalchemy.orm import (
    Mapped,
    Session,
    SessionTransaction,
    declared_attr,
    mapped_column,
    scoped_session,
)

OUTCOMES = ("ok", "refused", "failed")
ACTION_LENGTH = 64
TARGET_LENGTH = 255
ACTOR_NAME_LENGTH = 150
IP_LENGTH = 64
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 200

# A detail whose key matches is stored and logged as "[redacted]", whatever its value.
SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|credential|private|(^|_)(access_|refresh_|id_)?token$"
    r"|code_verifier|^code$|cookie|authorization",
    re.IGNORECASE,
)
REDACTED = "[redacted]"
# A plain session or a scoped one (Flask-SQLAlchemy's ``db.session``).
AnySession = Session | scoped_session[Any]


@dataclass(frozen=True)
class AuditEntry:
    """One console action (or refused attempt): who, what, on what, from where, result."""

    actor_id: str
    actor_name: str
    action: str  # e.g. "user.disable", "client.rotate_secret" (at most 64 characters)
    target: str  # e.g. "user:alice", "client:<client_id>", "key:<kid>" (at most 255)
    ip: str | None
    details: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"  # one of OUTCOMES

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        if not self.action or len(self.action) > ACTION_LENGTH:
            raise ValueError(f"action must be 1 to {ACTION_LENGTH} characters")


def clean_details(details: dict[str, Any]) -> dict[str, Any]:
    """``details`` with every value under a secret-sounding key (at any depth) masked."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): (REDACTED if SECRET_KEY.search(str(k)) else clean(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return clean(dict(details))


def details_json(details: dict[str, Any]) -> str:
    """The ``details`` column's text: cleaned, compact, keys sorted (stable to compare)."""
    return json.dumps(clean_details(details), sort_keys=True, separators=(",", ":"), default=str)


def client_ip() -> str | None:
    """The client's address for the current request (after ``TRUSTED_PROXIES``' ProxyFix);
    ``None`` outside a request (a CLI command)."""
    from flask import has_request_context, request

    if not has_request_context():
        return None
    address = request.remote_addr
    return address[:IP_LENGTH] if address else None


def log_entry(service: str, entry: AuditEntry, at: datetime | None = None) -> None:
    """The entry as one JSON line on ``clickcall.<service>.audit`` (details cleaned)."""
    fields: dict[str, Any] = {
        "event": "audit",
        "service": service,
        "at": _iso(at or datetime.now(UTC)),
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "action": entry.action,
        "target": entry.target,
        "ip": entry.ip,
        "outcome": entry.outcome,
        "details": clean_details(entry.details),
    }
    logging.getLogger(f"clickcall.{service}.audit").info("audit", extra={"fields": fields})


def entry_dict(row: Any) -> dict[str, Any]:
    """A stored ``audit_events`` row as the console shows it (and tests compare it)."""
    try:
        details = json.loads(row.details) if row.details else {}
    except ValueError:
        details = {"unreadable": row.details}
    return {
        "id": row.id,
        "at": _iso(row.at),
        "actor_id": row.actor_id,
        "actor_name": row.actor_name,
        "action": row.action,
        "target": row.target,
        "ip": row.ip,
        "outcome": row.outcome,
        "details": details,
    }


# --- storage ---------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditEventMixin:
    """The ``audit_events`` columns; a service declares
    ``class AuditEvent(AuditEventMixin, db.Model): __tablename__ = "audit_events"``.

    Its migration creates: id (integer, autoincrement), at (timestamp with time zone),
    actor_id String(64), actor_name String(150), action String(64), target String(255),
    ip String(64) nullable, details Text, outcome String(16); indexes on at, actor_name and
    action (see :func:`audit_indexes`).
    """

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=_utcnow)
    actor_id: Mapped[str] = mapped_column(String(64), nullable=False)
    actor_name: Mapped[str] = mapped_column(String(ACTOR_NAME_LENGTH), nullable=False)
    action: Mapped[str] = mapped_column(String(ACTION_LENGTH), nullable=False)
    target: Mapped[str] = mapped_column(String(TARGET_LENGTH), nullable=False, default="")
    ip: Mapped[str | None] = mapped_column(String(IP_LENGTH), nullable=True)
    details: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="ok")

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return audit_indexes(cls.__tablename__)  # type: ignore[attr-defined]


def audit_indexes(table: str) -> tuple[Index, ...]:
    """Indexes for listing: newest first, by actor, by action (names prefixed ``ix_<table>``)."""
    return (
        Index(f"ix_{table}_at", "at"),
        Index(f"ix_{table}_actor_name", "actor_name"),
        Index(f"ix_{table}_action", "action"),
    )


def audit_columns() -> dict[str, Any]:
    """Fresh column definitions, for a service that prefers not to use the mixin."""
    return {
        "id": mapped_column(Integer, primary_key=True, autoincrement=True),
        "at": mapped_column(DateTime(timezone=True), nullable=False, default=_utcnow),
        "actor_id": mapped_column(String(64), nullable=False),
        "actor_name": mapped_column(String(ACTOR_NAME_LENGTH), nullable=False),
        "action": mapped_column(String(ACTION_LENGTH), nullable=False),
        "target": mapped_column(String(TARGET_LENGTH), nullable=False, default=""),
        "ip": mapped_column(String(IP_LENGTH), nullable=True),
        "details": mapped_column(Text, nullable=False, default="{}"),
        "outcome": mapped_column(String(16), nullable=False, default="ok"),
    }


def record(session: AnySession, model: type[Any], service: str, entry: AuditEntry) -> Any:
    """Add the entry's row to ``session``, to be committed with the caller's action.

    The JSON line is logged when that transaction commits, so the log holds exactly what
    the table holds: an action rolled back (then recorded again as refused) logs once.
    Fields too long for their column are cut and NUL characters dropped (PostgreSQL refuses
    them in text): an audit row is never refused for what an attempt typed.
    """
    at = _utcnow()
    row = model(
        at=at,
        actor_id=_text(entry.actor_id, 64),
        actor_name=_text(entry.actor_name, ACTOR_NAME_LENGTH),
        action=_text(entry.action, ACTION_LENGTH),
        target=_text(entry.target, TARGET_LENGTH),
        ip=_text(entry.ip, IP_LENGTH) or None,
        details=details_json(entry.details),  # JSON escapes control characters
        outcome=entry.outcome,
    )
    session.add(row)
    session.info.setdefault(_PENDING, []).append((service, entry, at))
    return row


# Entries added to a session and not yet committed: logged on commit, dropped when the
# transaction ends otherwise (rollback, close).
_PENDING = "clickcall.audit.pending"


@event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    for service, entry, at in session.info.pop(_PENDING, ()):
        log_entry(service, entry, at)


@event.listens_for(Session, "after_transaction_end")
def _drop_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class Page:
    """One page of a listing (``page`` counts from 1)."""

    items: list[Any]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def page_number(value: str | None) -> int:
    """A ``?page=`` value as a page number (1 when absent or not a positive integer)."""
    try:
        number = int(value or "1")
    except ValueError:
        return 1
    return number if 1 <= number <= 1_000_000 else 1


def list_events(
    session: AnySession,
    model: type[Any],
    *,
    actor: str | None = None,
    action: str | None = None,
    page: int = 1,
    per_page: int = DEFAULT_PER_PAGE,
) -> Page:
    """Stored events, newest first; ``actor`` matches the username exactly (or the actor id),
    ``action`` matches exactly or as a prefix ending in a dot (``"user."``)."""
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    page = max(1, page)
    query = select(model)
    if actor:
        query = query.where((model.actor_name == actor) | (model.actor_id == actor))
    if action:
        if action.endswith("."):
            query = query.where(model.action.startswith(action, autoescape=True))
        else:
            query = query.where(model.action == action)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(model.at.desc(), model.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return Page(items=list(rows), page=page, per_page=per_page, total=total)


def _text(value: str | None, size: int) -> str:
    return (value or "").replace("\x00", "")[:size]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they are stored in UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
