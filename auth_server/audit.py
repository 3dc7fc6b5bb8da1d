"""The auth server's audit trail: what operators did in the console (``audit_events``).

``record`` adds the entry in the caller's transaction, so an action and its entry are
committed together (or neither is); a refused attempt is recorded after the rollback of
what it tried. The entry is logged as one JSON line on ``clickcall.auth_server.audit`` at once.
Entry shape, secret masking and listing are ``shared.audit``'s.
"""

from __future__ import annotations

from shared import audit as shared_audit
from shared.audit import AuditEntry, Page

from .extensions import db
from .models import AuditEvent

SERVICE = "auth_server"


def record(entry: AuditEntry) -> AuditEvent:
    """Add ``entry`` to the current transaction (the caller commits) and log it."""
    row: AuditEvent = shared_audit.record(db.session, AuditEvent, SERVICE, entry)
    return row


def record_now(entry: AuditEntry) -> AuditEvent:
    """Record ``entry`` on its own (a refused attempt, an action outside the database)."""
    row = record(entry)
    db.session.commit()
    return row


def list_events(
    actor: str | None = None, action: str | None = None, page: int = 1, per_page: int = 50
) -> Page:
    """Stored entries, newest first (see ``shared.audit.list_events`` for the filters)."""
    return shared_audit.list_events(
        db.session, AuditEvent, actor=actor, action=action, page=page, per_page=per_page
    )
