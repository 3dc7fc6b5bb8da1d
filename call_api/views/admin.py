"""The small admin interface (scope ``admin``, client-credentials tokens)."""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for

from shared.errors import InvalidRequest

from .. import calls, lifecycle
from ..auth import require_token
from ..render import respond
from .params import body, int_arg, parse_integer
from .rest import policy

bp = Blueprint("admin", __name__, url_prefix="/admin")

MAX_SUBJECT = 255
# ``status`` of a user's call list: the original's two values, every call, or one state.
STATUS_FILTERS = ("ongoing", "ended", "all", *lifecycle.STATES)


def _subject(sub: str) -> str:
    if not sub or len(sub) > MAX_SUBJECT or "\x00" in sub:  # PostgreSQL text cannot hold NUL
        raise InvalidRequest(f"The subject must be 1–{MAX_SUBJECT} characters, without NUL.")
    return sub


def _summary(sub: str) -> dict[str, object]:
    summary = calls.user_summary(sub, policy())
    summary["recent_calls"] = [calls.as_dict(c) for c in summary["recent_calls"]]
    return summary


@bp.get("/users/<path:sub>/calls")
@require_token("admin")
def user_calls(sub: str) -> Response:
    """A user's calls, newest first, paginated; ``status`` = ongoing | ended | all, or a
    lifecycle state (queued, ringing, in-progress, completed, …)."""
    sub = _subject(sub)
    status = request.args.get("status", "all")
    if status not in STATUS_FILTERS:
        raise InvalidRequest(
            f"status must be ongoing, ended, all or a call state ({', '.join(lifecycle.STATES)})."
        )
    page = int_arg("page", 1, 1, 1_000_000)
    per_page = int_arg("per_page", 20, 1, 100)
    rows, total = calls.list_calls(sub, policy(), status, page, per_page)
    more = page * per_page < total
    return respond(
        {
            "subject": sub,
            "status": status,
            "page": page,
            "per_page": per_page,
            "total": total,
            "next": url_for(
                "admin.user_calls", sub=sub, status=status, page=page + 1, per_page=per_page
            )
            if more
            else None,
            "calls": [calls.as_dict(c) for c in rows],
        },
        root="response",
    )


@bp.get("/users/<path:sub>")
@require_token("admin")
def user(sub: str) -> Response:
    """A user's limit, ongoing count and recent calls."""
    return respond(_summary(_subject(sub)), root="user")


@bp.put("/users/<path:sub>/limit")
@require_token("admin")
def user_limit(sub: str) -> Response:
    """Set ``{"max_ongoing": N}`` (``null`` returns the user to the default)."""
    sub = _subject(sub)
    data = body()
    if "max_ongoing" not in data:
        raise InvalidRequest("The 'max_ongoing' parameter is required.")
    raw = data["max_ongoing"]
    # A form sends text: a short run of ASCII digits, or refused below (never int() on it:
    # it fails past 4,300 digits, and str.isdigit() also accepts "²").
    if isinstance(raw, str):
        number = parse_integer(raw)
        raw = raw if number is None else number
    if raw is not None and (isinstance(raw, bool) or not isinstance(raw, int)):
        raise InvalidRequest(f"max_ongoing must be an integer from 0 to {calls.MAX_LIMIT} or null.")
    calls.set_limit(sub, raw)
    return respond(_summary(sub), root="user")


@bp.get("/calls/<token_call>")
@require_token("admin")
def call(token_call: str) -> Response:
    """Any user's call."""
    return respond(calls.as_dict(calls.get_call(token_call, policy())), root="call")


@bp.post("/calls/<token_call>/end")
@require_token("admin")
def force_end(token_call: str) -> Response:
    """Force-end a call (``end_reason: admin``); an ended call is returned unchanged."""
    return respond(calls.as_dict(calls.end_call(token_call, policy(), reason="admin")), root="call")
