"""The call API's audit trail: what operators did in its console (``audit_events``).

An action and its entry commit together, or neither does: the console ``stage``\\ s the
entry in the action's transaction — from the service function's ``before_commit`` hook
(``calls.end_call``, ``calls.set_limit``), or just before a function that commits the
session itself (``webhooks.redeliver``, whose rollback on a refusal takes the row with it)
— and ``log``\\ s it once the action committed. A refused attempt is recorded on its own
(``record_now``) after the rollback of what it tried. The log is one JSON line on
``clickcall.call_api.audit`` (the service's name in its access log and metrics). Entry
shape, secret masking and listing are ``shared.audit``'s.
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared import audit as shared_audit
from shared.audit import AuditEntry, Page

from .extensions import db
from .models import AuditEvent

SERVICE = "call_api"


def stage(entry: AuditEntry) -> AuditEvent:
    """Add ``entry``'s row to the current transaction without logging it yet (the action
    may still be refused): ``log`` it after the commit."""
    row = AuditEvent(
        at=datetime.now(UTC),
        actor_id=entry.actor_id[:64],
        actor_name=entry.actor_name[: shared_audit.ACTOR_NAME_LENGTH],
        action=entry.action,
        target=entry.target[: shared_audit.TARGET_LENGTH],
        ip=entry.ip[: shared_audit.IP_LENGTH] if entry.ip else None,
        details=shared_audit.details_json(entry.details),
        outcome=entry.outcome,
    )
    db.session.add(row)
    return row


def log(entry: AuditEntry, row: AuditEvent) -> None:
    """The committed entry as one JSON line (``shared.audit.log_entry``)."""
    shared_audit.log_entry(SERVICE, entry, row.at)


def record(entry: AuditEntry) -> AuditEvent:
    """Add ``entry`` to the current transaction (the caller commits) and log it at once."""
    row: AuditEvent = shared_audit.record(db.session, AuditEvent, SERVICE, entry)
    return row


def record_now(entry: AuditEntry) -> AuditEvent:
    """Record ``entry`` on its own (a refused attempt, after its action rolled back)."""
    try:
        row = record(entry)
        db.session.commit()
        return row
    except BaseException:
        db.session.rollback()
        raise


def list_events(
    actor: str | None = None, action: str | None = None, page: int = 1, per_page: int = 50
) -> Page:
    """Stored entries, newest first (see ``shared.audit.list_events`` for the filters)."""
    found = shared_audit.list_events(
        db.session, AuditEvent, actor=actor, action=action, page=page, per_page=per_page
    )
    db.session.commit()  # end the read transaction (on SQLite it holds the write lock)
    return found
