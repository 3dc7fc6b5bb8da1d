"""The operator's console on the call API (``/calls/console/…``), for web sessions whose
token carries ``admin``: users' limits, every user's live calls (force-end), call history,
webhook deliveries (redeliver), a dashboard of what ``/metrics`` exposes, and the audit
trail of every action taken here.

Pages are GET; every action is a POST with the CSRF token (checked for every POST under
``/calls`` by ``call_api.web.session``), answered with a redirect to the page that shows
its result (``?done=…``). Force-ending a call asks for a confirmation first. Every action
that reaches the service is audited (``call_api.audit``): in the action's own transaction
when it succeeds, on its own when it is refused; a form that fails its checks changes
nothing and is only answered (400, the form again with the reason).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, make_response, redirect, render_template, request, url_for
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from werkzeug.wrappers import Response

from shared import audit as shared_audit
from shared.audit import AuditEntry
from shared.errors import ClickCallError, ObjectDoesNotExist

from .. import audit, calls, lifecycle, webhooks
from ..extensions import db
from ..metrics import METRICS
from ..models import AuditEvent, Call, CallEvent
from ..views.params import parse_integer
from .session import current_web_user, error_page, require_web_login

bp = Blueprint("console", __name__, url_prefix="/calls/console")

PER_PAGE = 20
MAX_SUBJECT = 255
MAX_CLIENT_ID = 64
LIMIT_REFUSALS = "clickcall_call_limit_refusals_total"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# The console's pages, in the order of its navigation.
NAV = (
    ("console.dashboard", "Dashboard"),
    ("console.users", "Users' limits"),
    ("console.live", "Live calls"),
    ("console.history", "Call history"),
    ("console.deliveries", "Webhooks"),
    ("console.audit_log", "Audit"),
)

# What a redirect after an action says on the page it lands on (``?done=…``); anything else
# in the query string says nothing.
DONE = {
    "limit-set": "The limit is saved.",
    "limit-reset": "The user is back on the default limit.",
    "ended": "The call is ended (end_reason admin).",
    "already-ended": "The call had already ended: nothing changed.",
    "redelivered": "The event is pending again: a webhook worker will send it shortly.",
}


ERROR_TITLES = {
    400: "This request cannot be used",
    404: "Not found",
    409: "Not possible just now",
}


# --- helpers -----------------------------------------------------------------------------


def _policy() -> calls.Policy:
    return calls.Policy.from_config(current_app.config)


def when(value: datetime | str | None) -> str:
    """A timestamp as the console shows it: ``2026-12-01 10:00:03 UTC``."""
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _page(template: str, status: int = 200, **context: Any) -> Response:
    response = make_response(
        render_template(
            template,
            nav=NAV,
            when=when,
            done=DONE.get(request.args.get("done", "")),
            **context,
        ),
        status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _page_number() -> int:
    return shared_audit.page_number(request.args.get("page"))


def _pages(total: int) -> int:
    return max(1, -(-total // PER_PAGE))


def _entry(action: str, target: str, details: dict[str, Any], outcome: str = "ok") -> AuditEntry:
    user = current_web_user()
    return AuditEntry(
        actor_id=user.subject,
        actor_name=user.username,
        action=action,
        target=target,
        ip=shared_audit.client_ip(),
        details=details,
        outcome=outcome,
    )


def _refused(action: str, target: str, details: dict[str, Any], exc: ClickCallError) -> None:
    """Record a refused attempt (its own transaction: what it tried was rolled back)."""
    db.session.rollback()
    reason = {"error": exc.error, "error_description": exc.description}
    audit.record_now(_entry(action, target, {**details, **reason}, outcome="refused"))


def _text(value: str | None, maximum: int) -> str | None:
    """A query or form field, stripped; ``None`` when too long or holding NUL."""
    text = (value or "").strip()
    if len(text) > maximum or "\x00" in text:
        return None
    return text


def _day(value: str | None) -> date | None:
    """``YYYY-MM-DD`` (an ``<input type=date>``) as a date; ``None`` when empty."""
    text = (value or "").strip()
    if not text:
        return None
    if not _DATE.fullmatch(text):
        raise ValueError(text)
    return date.fromisoformat(text)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@bp.errorhandler(ClickCallError)
def _error(exc: ClickCallError) -> Response:
    """A refusal raised by a service function (no such call or event, …) as the pages'
    error page, with its status."""
    title = ERROR_TITLES.get(exc.status, "This request cannot continue")
    return error_page(exc.status, title, exc.description)


# --- dashboard ---------------------------------------------------------------------------


def limit_refusals() -> tuple[int, str]:
    """The limit-refusal counter ``/metrics`` exposes, and whose count it is.

    Refusals are not stored in the database (only counted), so this is the counter: summed
    over the instance's workers when they share ``PROMETHEUS_MULTIPROC_DIR`` (as gunicorn's
    do), else this process's own. Either way since the process(es) started, per replica."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return int(registry.get_sample_value(LIMIT_REFUSALS) or 0), "every worker of this instance"
    return int(METRICS.registry.get_sample_value(LIMIT_REFUSALS) or 0), "this process"


@bp.get("")
@require_web_login(admin=True)
def dashboard() -> Response:
    """Live calls by state, calls ended per minute by outcome over the last hour, limit
    refusals and the webhook backlog: the figures ``/metrics`` exposes, read here from the
    database (the refusals from the counter: they are not stored)."""
    now = calls.now_utc()
    live = calls.live_by_state()
    series = calls.ended_per_minute(_policy(), now)
    backlog = calls.webhook_backlog(now)
    db.session.commit()  # end the read transaction
    totals = {state: sum(counts[state] for _, counts in series) for state in lifecycle.FINAL_STATES}
    refusals, refusals_scope = limit_refusals()
    return _page(
        "console.html",
        live=live,
        live_total=sum(live.values()),
        minutes=[
            (at, counts, sum(counts.values()))
            for at, counts in reversed(series)
            if any(counts.values())
        ],
        totals=totals,
        hour_total=sum(totals.values()),
        final_states=lifecycle.FINAL_STATES,
        refusals=refusals,
        refusals_scope=refusals_scope,
        backlog=backlog,
    )


# --- users' limits -----------------------------------------------------------------------


@bp.get("/users")
@require_web_login(admin=True)
def users() -> Response:
    """Look up a subject: its limit and where it comes from, its live calls, its recent
    calls; set or reset its limit."""
    subject = _text(request.args.get("subject"), MAX_SUBJECT)
    if subject is None:
        return _page(
            "console_users.html",
            400,
            subject=request.args.get("subject", "")[:MAX_SUBJECT].replace("\x00", ""),
            error=f"A subject is 1–{MAX_SUBJECT} characters.",
            summary=None,
        )
    summary = calls.user_summary(subject, _policy()) if subject else None
    db.session.commit()
    return _page("console_users.html", subject=subject, summary=summary, error=None)


@bp.post("/users/limit")
@require_web_login(admin=True)
def set_limit() -> Response:
    """Set a subject's own limit (``max_ongoing``), or return it to the default
    (``reset``). Lowering a limit ends no call."""
    subject = _text(request.form.get("subject"), MAX_SUBJECT)
    reset = request.form.get("action") == "reset"
    raw = request.form.get("max_ongoing", "")
    number = None if reset else parse_integer(raw)
    if not subject or (not reset and (number is None or not 0 <= number <= calls.MAX_LIMIT)):
        error = (
            f"A subject is 1–{MAX_SUBJECT} characters."
            if not subject
            else f"The limit must be a whole number from 0 to {calls.MAX_LIMIT}."
        )
        summary = calls.user_summary(subject, _policy()) if subject else None
        db.session.commit()
        return _page(
            "console_users.html",
            400,
            subject=subject or "",
            summary=summary,
            error=error,
            limit_value=raw[:20],
        )
    action = "limit.reset" if reset else "limit.set"
    target = f"user:{subject}"
    default = _policy().default_limit

    staged: list[tuple[AuditEntry, AuditEvent]] = []

    def audit_it(previous: int | None) -> None:
        details: dict[str, Any] = {"previous": previous, "default": default}
        if not reset:
            details["max_ongoing"] = number
        entry = _entry(action, target, details)
        staged.append((entry, audit.stage(entry)))

    calls.set_limit(subject, number, before_commit=audit_it)
    audit.log(*staged[0])
    return redirect(
        url_for("console.users", subject=subject, done="limit-reset" if reset else "limit-set"),
        303,
    )


# --- live calls and force-end ------------------------------------------------------------


@bp.get("/live")
@require_web_login(admin=True)
def live() -> Response:
    """Every user's live calls, newest first, paginated."""
    page = _page_number()
    rows, total = calls.search_calls(calls.CallFilter(state="ongoing"), _policy(), page, PER_PAGE)
    return _page(
        "console_live.html", calls=rows, page=page, pages=_pages(total), total=total, args={}
    )


@bp.get("/calls/<token_call>/end")
@require_web_login(admin=True)
def confirm_end(token_call: str) -> Response:
    """The confirmation step before a force-end."""
    call = calls.get_call(token_call, _policy())
    db.session.commit()
    return _page("console_end.html", call=call, error=None)


@bp.post("/calls/<token_call>/end")
@require_web_login(admin=True)
def force_end(token_call: str) -> Response:
    """Force-end any user's call (``end_reason: admin``, its event and webhook as for any
    hang-up); needs the confirmation box ticked. An ended call is left as it is."""
    target = f"call:{token_call[:64]}"
    if request.form.get("confirm") != "yes":
        call = calls.get_call(token_call, _policy())
        db.session.commit()
        error = "Tick the box to confirm that this call should be ended."
        return _page("console_end.html", 400, call=call, error=error)
    staged: list[tuple[AuditEntry, AuditEvent]] = []

    def audit_it(call: Call, state_before: str) -> None:
        details = {
            "subject": call.subject,
            "client_id": call.client_id,
            "state_before": state_before,
            "state": call.state,
            "end_reason": call.end_reason,
            "changed": call.state != state_before,
        }
        entry = _entry("call.force_end", target, details)
        staged.append((entry, audit.stage(entry)))

    try:
        calls.end_call(token_call, _policy(), reason="admin", before_commit=audit_it)
    except ObjectDoesNotExist as exc:
        _refused("call.force_end", target, {}, exc)
        raise
    entry, row = staged[0]
    audit.log(entry, row)
    done = "ended" if entry.details["changed"] else "already-ended"
    return redirect(url_for("console.call", token_call=token_call, done=done), 303)


# --- history -----------------------------------------------------------------------------


def _history_filter() -> tuple[calls.CallFilter, dict[str, str], dict[str, str]]:
    """The filters from the query string, the values to show back, and the errors by field."""
    args = request.args
    shown = {
        name: args.get(name, "")[:300] for name in ("subject", "client_id", "state", "from", "to")
    }
    errors: dict[str, str] = {}
    subject = _text(args.get("subject"), MAX_SUBJECT)
    if subject is None:
        errors["subject"] = f"A subject is at most {MAX_SUBJECT} characters."
    client_id = _text(args.get("client_id"), MAX_CLIENT_ID)
    if client_id is None:
        errors["client_id"] = f"An app's client ID is at most {MAX_CLIENT_ID} characters."
    state = args.get("state", "")
    if state not in calls.HISTORY_STATES:
        errors["state"] = "Choose a state from the list."
    days: dict[str, date | None] = {}
    for name in ("from", "to"):
        try:
            days[name] = _day(args.get(name))
        except ValueError:
            errors[name] = "A date is written YYYY-MM-DD."
            days[name] = None
    if days["from"] and days["to"] and days["from"] > days["to"]:
        errors["to"] = "The end date is before the start date."
    since = _midnight(days["from"]) if days["from"] else None
    until = _midnight(days["to"]) + timedelta(days=1) if days["to"] else None
    filters = calls.CallFilter(subject or "", client_id or "", state, since, until)
    return filters, shown, errors


@bp.get("/history")
@require_web_login(admin=True)
def history() -> Response:
    """Every user's calls, newest first, filtered by subject, app (client ID), state and
    the day they started (UTC, both ends included), paginated."""
    filters, shown, errors = _history_filter()
    page = _page_number()
    rows: list[Call] = []
    total = 0
    if not errors:
        rows, total = calls.search_calls(filters, _policy(), page, PER_PAGE)
    args = {k: v for k, v in shown.items() if v}
    return _page(
        "console_history.html",
        400 if errors else 200,
        calls=rows,
        page=page,
        pages=_pages(total),
        total=total,
        args=args,
        shown=shown,
        errors=errors,
        states=calls.HISTORY_STATES,
    )


# --- a call and its webhook deliveries ----------------------------------------------------


@bp.get("/webhooks")
@require_web_login(admin=True)
def deliveries() -> Response:
    """Find a call's deliveries by its ``token_call``; the events still pending or given
    up, oldest first."""
    token_call = _text(request.args.get("token_call"), 64)
    if token_call:
        return redirect(url_for("console.call", token_call=token_call), 303)
    page = _page_number()
    rows, total = calls.undelivered_events(page, PER_PAGE)
    return _page(
        "console_webhooks.html",
        events=rows,
        page=page,
        pages=_pages(total),
        total=total,
        args={},
    )


@bp.get("/calls/<token_call>")
@require_web_login(admin=True)
def call(token_call: str) -> Response:
    """One call (any user's) and its events: delivery state, attempts, redeliver."""
    found = calls.get_call(token_call, _policy())
    events = webhooks.events_for_call(token_call)["events"]
    return _page("console_call.html", call=found, events=events, error=None)


@bp.post("/events/<event_id>/redeliver")
@require_web_login(admin=True)
def redeliver(event_id: str) -> Response:
    """Send an event again (pending now, a fresh retry window); back to its call's page."""
    target = f"event:{event_id[:40]}"
    found = None
    if 1 <= len(event_id) <= 40 and "\x00" not in event_id:
        # Columns, not the entity: redeliver must load the row afresh under its lock.
        found = db.session.execute(
            select(Call.token_call, CallEvent.type, CallEvent.delivery, CallEvent.attempts)
            .join(Call, Call.id == CallEvent.call_id)
            .where(CallEvent.event_id == event_id)
        ).first()
    if found is None:
        exc = ObjectDoesNotExist("No such event.")
        _refused("event.redeliver", target, {}, exc)
        raise exc
    token_call = str(found.token_call)
    details = {
        "token_call": token_call,
        "type": found.type,
        "delivery_before": found.delivery,
        "attempts_before": found.attempts,
    }
    # redeliver commits the session itself: the row added here commits with its change,
    # and its rollback on a refusal takes the row with it.
    entry = _entry("event.redeliver", target, details)
    row = audit.stage(entry)
    try:
        webhooks.redeliver(event_id, current_app.config)
    except ClickCallError as exc:
        _refused("event.redeliver", target, details, exc)
        events = webhooks.events_for_call(token_call)["events"]
        return _page(
            "console_call.html",
            exc.status,
            call=calls.get_call(token_call, _policy()),
            events=events,
            error=exc.description,
        )
    audit.log(entry, row)
    return redirect(url_for("console.call", token_call=token_call, done="redelivered"), 303)


# --- the audit trail ---------------------------------------------------------------------


@bp.get("/audit")
@require_web_login(admin=True)
def audit_log() -> Response:
    """Every console action on the call API, newest first, by actor (username or subject)
    and action (exact, or a prefix ending in a dot: ``call.``)."""
    actor = _text(request.args.get("actor"), 255) or None
    action = _text(request.args.get("action"), 64) or None
    found = audit.list_events(actor=actor, action=action, page=_page_number(), per_page=PER_PAGE)
    args = {k: v for k, v in (("actor", actor), ("action", action)) if v}
    return _page(
        "console_audit.html",
        entries=[shared_audit.entry_dict(row) for row in found.items],
        page=found.page,
        pages=found.pages,
        total=found.total,
        args=args,
        actor=actor or "",
        action=action or "",
    )
