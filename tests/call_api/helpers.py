"""Plain helpers for the call API tests: expected shapes, XML reading, forged-token parts."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree as ET

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AUDIENCE, ISSUER, bearer

CALL_FIELDS = {
    "token_call",
    "number",
    "status",
    "started_at",
    "ended_at",
    "duration",
    "end_reason",
    "client_id",
    "subject",
    "state",
    "ringing_at",
    "answered_at",
    "time_limit",
    "ring_timeout",
    "status_callback",
}
# What a new call asks for when it names no time_limit / ring_timeout (the defaults).
MAX_DURATION_DEFAULT = 14400
RING_TIMEOUT_DEFAULT = 30
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TOKEN_CALL_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
NUMBER = "+14155550123"
OTHER_NUMBER = "+442079460958"
NOT_FOUND = {"error": "not_found", "error_description": "No such call."}


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()


def good_claims(**overrides: Any) -> dict[str, Any]:
    """The claims the auth server issues for a user token (``name=DROP`` removes one)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": str(uuid.uuid4()),
        "aud": AUDIENCE,
        "client_id": "forged-client",
        "scope": "call",
        "iat": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
        "username": "forger",
    }
    for name, value in overrides.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw_jwt(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand (for what PyJWT refuses to produce)."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url(signature)}"


def parse_iso(value: str) -> datetime:
    assert ISO_RE.match(value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def assert_ongoing(
    body: Any,
    number: str,
    client_id: str,
    subject: str,
    time_limit: int = MAX_DURATION_DEFAULT,
    ring_timeout: int = RING_TIMEOUT_DEFAULT,
    status_callback: str | None = None,
) -> None:
    """``body`` is exactly a new (``queued``, ``ongoing``) call with these values (generated
    ones by format)."""
    assert isinstance(body, dict)
    assert set(body) == CALL_FIELDS
    assert TOKEN_CALL_RE.match(body["token_call"]), body["token_call"]
    parse_iso(body["started_at"])
    assert body == {
        "token_call": body["token_call"],
        "number": number,
        "status": "ongoing",
        "started_at": body["started_at"],
        "ended_at": None,
        "duration": None,
        "end_reason": None,
        "client_id": client_id,
        "subject": subject,
        "state": "queued",
        "ringing_at": None,
        "answered_at": None,
        "time_limit": time_limit,
        "ring_timeout": ring_timeout,
        "status_callback": status_callback,
    }


# The state a live call ends in, by end_reason, when nobody answered it.
_UNANSWERED_END = {"hangup": "canceled", "admin": "canceled", "expired": "expired"}
_ANSWERED_END = {"hangup": "completed", "admin": "completed", "expired": "expired"}


def assert_ended(body: Any, before: dict[str, Any], reason: str, state: str | None = None) -> None:
    """``body`` is ``before`` (a live call) ended with ``reason``: ``state`` by default
    ``canceled`` (``completed`` once answered, ``expired`` for an expiry), ``duration``
    counted from the answer (0 if never answered)."""
    assert set(body) == CALL_FIELDS
    started = parse_iso(body["started_at"])
    ended = parse_iso(body["ended_at"])
    assert ended >= started
    assert type(body["duration"]) is int and body["duration"] >= 0
    if before["answered_at"] is None:
        assert body["duration"] == 0
        expected_state = _UNANSWERED_END[reason]
    else:
        answered = parse_iso(before["answered_at"])
        assert ended >= answered
        assert body["duration"] == int((ended - answered).total_seconds())
        expected_state = _ANSWERED_END[reason]
    assert body == {
        **before,
        "status": "ended",
        "ended_at": body["ended_at"],
        "duration": body["duration"],
        "end_reason": reason,
        "state": state or expected_state,
    }


def start(api: FlaskClient, token: str, number: str = NUMBER, **kwargs: Any) -> dict[str, Any]:
    """POST a call that must succeed; returns the body."""
    r = api.post("/rest/call", data={"number": number}, headers=bearer(token), **kwargs)
    assert r.status_code == 201, r.get_data(as_text=True)
    return dict(r.json)  # type: ignore[arg-type]


def set_started_at(app: Flask, token_call: str, when: datetime) -> None:
    """Move a call's start into the past directly in the database."""
    from sqlalchemy import update

    from call_api.models import Call

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        result = db.session.execute(
            update(Call).where(Call.token_call == token_call).values(started_at=when)
        )
        assert result.rowcount == 1
        db.session.commit()


def set_columns(app: Flask, token_call: str, **values: Any) -> None:
    """Change a call's columns directly in the database (say ``lease_expires_at`` into the
    past: a dialer that stopped renewing its lease)."""
    from sqlalchemy import update

    from call_api.models import Call

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        result = db.session.execute(
            update(Call).where(Call.token_call == token_call).values(**values)
        )
        assert result.rowcount == 1
        db.session.commit()


def event_rows(app: Flask, token_call: str) -> list[dict[str, Any]]:
    """The call's ``call_events`` rows in order, as dicts of the columns tests look at."""
    from sqlalchemy import select

    from call_api.models import Call, CallEvent

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        rows = db.session.execute(
            select(CallEvent)
            .join(Call, Call.id == CallEvent.call_id)
            .where(Call.token_call == token_call)
            .order_by(CallEvent.id)
        ).scalars()
        out = [
            {
                "type": e.type,
                "source": e.source,
                "dialer_event": e.dialer_event,
                "payload": json.loads(e.payload),
                "event_id": e.event_id,
                "client_id": e.client_id,
                "delivery": e.delivery,
                "url": e.url,
            }
            for e in rows
        ]
        db.session.remove()
        return out


def count_events(app: Flask) -> int:
    """Every ``call_events`` row (all calls)."""
    from sqlalchemy import func, select

    from call_api.models import CallEvent

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        count = int(db.session.scalar(select(func.count()).select_from(CallEvent)) or 0)
        db.session.remove()
        return count


def count_calls(app: Flask, subject: str | None = None) -> int:
    from sqlalchemy import func, select

    from call_api.models import Call

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        query = select(func.count()).select_from(Call)
        if subject is not None:
            query = query.where(Call.subject == subject)
        return int(db.session.scalar(query) or 0)


def xml_root(data: bytes) -> ET.Element:
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n'), data[:60]
    return ET.fromstring(data)


def xml_fields(element: ET.Element) -> dict[str, Any]:
    """A flat element as {tag: text}, ``nil="true"`` as None, missing text as ''."""
    out: dict[str, Any] = {}
    for child in element:
        assert child.tag not in out, f"duplicate <{child.tag}>"
        if child.get("nil") == "true":
            assert child.text is None and len(child) == 0
            out[child.tag] = None
        else:
            assert len(child) == 0, f"<{child.tag}> is not flat"
            out[child.tag] = child.text or ""
    return out


def as_text(body: dict[str, Any]) -> dict[str, Any]:
    """JSON values as the XML carries them: strings, ``None`` kept."""
    return {k: None if v is None else str(v) for k, v in body.items()}


class Dialer:
    """A dialer speaking the /dialer interface through a Flask test client."""

    def __init__(self, api: FlaskClient, token: str, dialer_id: str = "sim-1") -> None:
        self.api = api
        self.token = token
        self.dialer_id = dialer_id

    def poll_response(self, max_calls: int = 1, wait: float = 0, **extra: Any) -> Any:
        payload = {"dialer_id": self.dialer_id, "max_calls": max_calls, "wait": wait, **extra}
        return self.api.post("/dialer/poll", json=payload, headers=bearer(self.token))

    def poll(self, max_calls: int = 1, wait: float = 0) -> dict[str, Any]:
        """A poll that must succeed; returns the body."""
        r = self.poll_response(max_calls, wait)
        assert r.status_code == 200, r.get_data(as_text=True)
        return dict(r.json)  # type: ignore[arg-type]

    def claim(self, count: int = 1) -> list[dict[str, Any]]:
        """Poll for ``count`` calls and require exactly that many."""
        calls = self.poll(max_calls=count)["calls"]
        assert len(calls) == count, calls
        return list(calls)

    def event_response(self, token_call: str, event: Any) -> Any:
        return self.api.post(
            f"/dialer/calls/{token_call}/events",
            json={"dialer_id": self.dialer_id, "event": event},
            headers=bearer(self.token),
        )

    def event(self, token_call: str, event: str) -> dict[str, Any]:
        """An event that must apply (200, ``Dialer-Event-Applied: true``); returns the call."""
        r = self.event_response(token_call, event)
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.headers["Dialer-Event-Applied"] == "true"
        return dict(r.json)  # type: ignore[arg-type]


LEASE_FIELDS = ("dialer_id", "lease_expires_at", "claims")


def without_lease(body: dict[str, Any]) -> dict[str, Any]:
    """A dialer's view of a call minus its lease fields: the call as its app sees it."""
    return {k: v for k, v in body.items() if k not in LEASE_FIELDS}
