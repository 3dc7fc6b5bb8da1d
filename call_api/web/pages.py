"""The person's pages: live calls (``/calls``, refreshed by ``/calls/live.json``), hanging
one up (with a confirmation), and the call history with filters.

Every view wears ``require_web_login()`` and reads only the signed-in person's calls (the
subject is always the session's): another person's call is as unknown as a missing one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, render_template, request
from flask import url_for as flask_url_for
from werkzeug.wrappers import Response

from shared.errors import ObjectDoesNotExist

from .. import calls, lifecycle
from ..models import Call
from .history import PER_PAGE, STATE_CHOICES, FilterError, apps_of, parse_filter, search_calls
from .session import current_web_user, error_page, require_web_login

bp = Blueprint("calls", __name__, url_prefix="/calls")

POLL_SECONDS = 2

STATE_LABELS = {
    "queued": "Queued",
    "ringing": "Ringing",
    "in-progress": "In progress",
    "completed": "Completed",
    "busy": "Busy",
    "no-answer": "No answer",
    "failed": "Failed",
    "canceled": "Canceled",
    "expired": "Expired",
}


def policy() -> calls.Policy:
    return calls.Policy.from_config(current_app.config)


def when(value: datetime | None) -> str:
    """A time as the pages show it (UTC, to the second)."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def row(call: Call) -> dict[str, Any]:
    """A call as the pages (and ``live.json``) show it."""
    data = calls.as_dict(call)
    return {
        "token_call": call.token_call,
        "number": call.number,
        "app": call.client_id,
        "state": call.state,
        "state_label": STATE_LABELS.get(call.state, call.state),
        "live": call.status == "ongoing",
        "started_at": data["started_at"],
        "started": when(call.started_at),
        "answered_at": data["answered_at"],
        "answered": when(call.answered_at),
        "ended_at": data["ended_at"],
        "ended": when(call.ended_at),
        "end_reason": call.end_reason or "",
        "duration": data["duration"],
        "hangup_url": flask_url_for("calls.hangup", token_call=call.token_call),
    }


def _own_call(token_call: str) -> Call:
    return calls.get_call(token_call, policy(), subject=current_web_user().subject)


def _not_found() -> Response:
    return error_page(
        404,
        "No such call",
        "There is no call of yours at this address. It may belong to someone else, or the "
        "link may be mistyped.",
    )


@bp.get("")
@require_web_login()
def live() -> Response:
    """The person's live calls, across every app (``calls.js`` refreshes the table)."""
    subject = current_web_user().subject
    ongoing = [row(c) for c in calls.list_ongoing(subject, policy())]
    ended = None
    token = request.args.get("ended")
    if token:
        try:
            call = _own_call(token)
        except ObjectDoesNotExist:
            call = None
        if call is not None and call.status == "ended":
            ended = row(call)
    body = render_template("calls_live.html", calls=ongoing, ended=ended, poll_seconds=POLL_SECONDS)
    return Response(body, mimetype="text/html")


@bp.get("/live.json")
@require_web_login()
def live_json() -> Response:
    """The live calls as ``calls.js`` polls them (same data as the page's table)."""
    subject = current_web_user().subject
    ongoing = [row(c) for c in calls.list_ongoing(subject, policy())]
    return jsonify(calls=ongoing, count=len(ongoing), generated_at=calls.iso(calls.now_utc()))


@bp.get("/<token_call>/hangup")
@require_web_login()
def confirm_hangup(token_call: str) -> Response:
    """The confirmation step before hanging up."""
    try:
        call = _own_call(token_call)
    except ObjectDoesNotExist:
        return _not_found()
    body = render_template("calls_hangup.html", call=row(call), missing_confirm=False)
    return Response(body, mimetype="text/html")


@bp.post("/<token_call>/hangup")
@require_web_login()
def hangup(token_call: str) -> Response:
    """Hang up one of the person's calls (``confirm=yes`` required; CSRF checked before)."""
    try:
        call = _own_call(token_call)
    except ObjectDoesNotExist:
        return _not_found()
    if request.form.get("confirm") != "yes":
        body = render_template("calls_hangup.html", call=row(call), missing_confirm=True)
        return Response(body, status=400, mimetype="text/html")
    try:
        calls.end_call(token_call, policy(), subject=current_web_user().subject)
    except ObjectDoesNotExist:
        return _not_found()
    return redirect(flask_url_for("calls.live", ended=token_call), code=303)


@bp.get("/history")
@require_web_login()
def history() -> Response:
    """The person's calls, newest first, filtered by state, app and days; paginated."""
    subject = current_web_user().subject
    problems: dict[str, str] = {}
    try:
        chosen = parse_filter(request.args)
    except FilterError as exc:
        problems = exc.problems
        chosen = None
    rows: list[dict[str, Any]] = []
    total = 0
    if chosen is not None:
        found, total = search_calls(chosen, policy(), subject)
        rows = [row(c) for c in found]
    pages = max(1, -(-total // PER_PAGE))
    page = chosen.page if chosen is not None else 1

    def page_url(number: int) -> str:
        assert chosen is not None
        args: dict[str, Any] = chosen.query_args(page=number)
        return flask_url_for("calls.history", **args)

    body = render_template(
        "calls_history.html",
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        previous_url=page_url(page - 1) if chosen is not None and 1 < page <= pages + 1 else None,
        next_url=page_url(page + 1) if chosen is not None and page < pages else None,
        first_url=page_url(1) if chosen is not None and page > pages else None,
        problems=problems,
        values={k: request.args.get(k, "") for k in ("state", "app", "from", "to")},
        states=[(s, "All states" if s == "all" else _state_choice(s)) for s in STATE_CHOICES],
        apps=apps_of(subject),
        filtered=chosen is not None and chosen.query_args(page=1) != {},
    )
    return Response(body, status=400 if problems else 200, mimetype="text/html")


def _state_choice(state: str) -> str:
    if state == "ongoing":
        return "Live (any live state)"
    if state == "ended":
        return "Ended (any final state)"
    live = " (live)" if state in lifecycle.LIVE_STATES else ""
    return STATE_LABELS.get(state, state) + live
