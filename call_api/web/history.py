"""Call history with filters, for the pages: one person's (``/calls/history``) or, with
``subject=None``, everyone's (the operator console).

``parse_filter`` turns query parameters into a ``HistoryFilter`` or a ``FilterError``
listing every problem in words a person can act on; ``search_calls`` runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select

from .. import calls, lifecycle
from ..extensions import db
from ..models import Call

PER_PAGE = 20
MAX_PAGE = 100_000
STATE_CHOICES: tuple[str, ...] = ("all", "ongoing", "ended", *lifecycle.STATES)


class FilterError(ValueError):
    """Query parameters that do not make a filter; ``problems`` maps a field to why."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(problems.values()))
        self.problems = problems


@dataclass(frozen=True)
class HistoryFilter:
    state: str = "all"
    client_id: str | None = None
    since: date | None = None  # the first day shown (UTC)
    until: date | None = None  # the last day shown (UTC), included
    page: int = 1
    raw: dict[str, str] = field(default_factory=dict, compare=False)

    def query_args(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (for links to other pages of the same results)."""
        args = {
            "state": self.state if self.state != "all" else "",
            "app": self.client_id or "",
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
            "page": str(self.page),
        }
        args.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in args.items() if v and not (k == "page" and v == "1")}


def _parse_day(value: str) -> date:
    if len(value) != 10:
        raise ValueError(value)
    return date.fromisoformat(value)


def parse_filter(args: Mapping[str, str]) -> HistoryFilter:
    """Read ``state``, ``app``, ``from``, ``to`` (YYYY-MM-DD, UTC) and ``page``."""
    raw = {k: str(args.get(k, "")) for k in ("state", "app", "from", "to", "page")}
    problems: dict[str, str] = {}
    state = raw["state"].strip() or "all"
    if state not in STATE_CHOICES:
        problems["state"] = "State must be one of: " + ", ".join(STATE_CHOICES) + "."
    client_id = raw["app"].strip() or None
    if client_id is not None and (
        len(client_id) > 64 or any(ord(ch) < 32 or ord(ch) == 127 for ch in client_id)
    ):
        problems["app"] = "The app must be a client id of at most 64 printable characters."
    days: dict[str, date | None] = {}
    for name, label in (("from", "From"), ("to", "To")):
        text = raw[name].strip()
        days[name] = None
        if text:
            try:
                days[name] = _parse_day(text)
            except ValueError:
                problems[name] = f"{label} must be a date written YYYY-MM-DD, such as 2026-12-01."
    since, until = days["from"], days["to"]
    if since and until and since > until:
        problems["to"] = "To must be the same day as From or later."
    page = 1
    if raw["page"].strip():
        text = raw["page"].strip()
        if not (
            text.isascii() and text.isdigit() and len(text) <= 7 and 1 <= int(text) <= MAX_PAGE
        ):
            problems["page"] = f"Page must be a whole number from 1 to {MAX_PAGE}."
        else:
            page = int(text)
    if problems:
        raise FilterError(problems)
    return HistoryFilter(state, client_id, since, until, page, raw)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def search_calls(
    history: HistoryFilter,
    policy: calls.Policy,
    subject: str | None,
    per_page: int = PER_PAGE,
) -> tuple[list[Call], int]:
    """The page of calls the filter selects (newest first) and how many it selects in all.

    Overdue calls are settled first (as ``calls.list_calls`` does), so a call past its
    limits is not shown as live."""
    if subject is not None:
        calls.list_ongoing(subject, policy)
    else:
        calls.expire_calls(policy)
    query = select(Call)
    if subject is not None:
        query = query.where(Call.subject == subject)
    if history.state in ("ongoing", "ended"):
        query = query.where(Call.status == history.state)
    elif history.state != "all":
        query = query.where(Call.state == history.state)
    if history.client_id is not None:
        query = query.where(Call.client_id == history.client_id)
    if history.since is not None:
        query = query.where(Call.started_at >= _start_of(history.since))
    if history.until is not None and history.until < date.max:
        query = query.where(Call.started_at < _start_of(history.until + timedelta(days=1)))
    total = int(db.session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = db.session.scalars(
        query.order_by(Call.started_at.desc(), Call.id.desc())
        .offset((history.page - 1) * per_page)
        .limit(per_page)
    )
    return list(rows), total


def apps_of(subject: str | None) -> list[str]:
    """The client ids that opened calls (for the app filter's choices)."""
    query = select(Call.client_id).distinct().order_by(Call.client_id)
    if subject is not None:
        query = query.where(Call.subject == subject)
    return list(db.session.scalars(query.limit(200)))
