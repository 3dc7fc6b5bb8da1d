"""The operator's console on the call API (``/calls/console``): every page and action, as an
operator signed in through the real OAuth flow (an auth-server user with the admin role),
on SQLite and PostgreSQL. Each action is checked by its effect and by the exact audit entry
it stores (and logs). Who may reach the console: tests/security/test_call_console_access.py.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from flask import Flask

from tests.call_api.web_helpers import Pages, forward_to, pages_config, register_pages_client
from tests.conftest import UserInfo, make_user

A_SUBJECT = "11111111-2222-3333-4444-555555555555"
B_SUBJECT = "66666666-7777-8888-9999-000000000000"
NUMBER = "+14155550123"
HOOK = "http://127.0.0.1:9/hook"
DEFAULT_LIMIT = 2  # CALL_MAX_ONGOING_DEFAULT


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def pages_app(auth_app: Flask, make_call_app: Callable[..., Flask]) -> Flask:
    """The call API with its pages configured, talking to the in-process auth server."""
    app = make_call_app(**pages_config(register_pages_client(auth_app)))
    forward_to(app, auth_app)
    return app


def signed_in(pages_app: Flask, auth_app: Flask, user: UserInfo) -> Pages:
    browser = Pages(pages_app, auth_app)
    r = browser.sign_in(user)
    assert r.status_code in (302, 303), r.get_data(as_text=True)
    browser.user = user  # type: ignore[attr-defined]
    return browser


@pytest.fixture
def olga(auth_app: Flask) -> UserInfo:
    return make_user(auth_app, "olga", "olga-password", role="admin")


@pytest.fixture
def operator(pages_app: Flask, auth_app: Flask, olga: UserInfo) -> Pages:
    """Olga, an operator (admin role), signed in to the call API's pages."""
    return signed_in(pages_app, auth_app, olga)


def csrf(browser: Pages) -> str:
    return browser.csrf("/calls/console")


def text_of(response: Any) -> str:
    """The page's text without tags, spaces collapsed (to compare what a reader sees)."""
    html = response.get_data(as_text=True)
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def start(
    app: Flask,
    subject: str = A_SUBJECT,
    client_id: str = "app-1",
    now: datetime | None = None,
    hook: str | None = HOOK,
) -> str:
    """A queued call (with a status callback, so its events are to be delivered)."""
    from call_api import calls

    with app.app_context():
        policy = calls.Policy.from_config(app.config)
        options = calls.CallOptions(status_callback=hook)
        started = calls.start_call(subject, client_id, NUMBER, policy, now=now, options=options)
        return started.call.token_call


def end(app: Flask, token_call: str, now: datetime | None = None) -> None:
    from call_api import calls

    with app.app_context():
        calls.end_call(token_call, calls.Policy.from_config(app.config), now=now)


def stored(app: Flask, token_call: str) -> dict[str, Any]:
    from call_api import calls

    with app.app_context():
        call = calls.get_call(token_call, calls.Policy.from_config(app.config))
        return calls.as_dict(call)


def events_of(app: Flask, token_call: str) -> list[dict[str, Any]]:
    from call_api import webhooks

    with app.app_context():
        return list(webhooks.events_for_call(token_call)["events"])


def audit_entries(app: Flask) -> list[dict[str, Any]]:
    """Every stored audit entry, oldest first, without its id and time (checked apart)."""
    from sqlalchemy import select

    from call_api.extensions import db
    from call_api.models import AuditEvent
    from shared.audit import entry_dict

    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        entries = [entry_dict(row) for row in rows]
        db.session.remove()
    for entry in entries:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry.pop("at"))
        assert isinstance(entry.pop("id"), int)
    return entries


def by(user: UserInfo, **fields: Any) -> dict[str, Any]:
    """An audit entry made by ``user`` from the test client's address."""
    return {"actor_id": user.id, "actor_name": user.username, "ip": "127.0.0.1", **fields}


def limit_of(app: Flask, subject: str) -> dict[str, Any]:
    from call_api import calls

    with app.app_context():
        summary = calls.user_summary(subject, calls.Policy.from_config(app.config))
        return {k: summary[k] for k in ("max_ongoing", "limit_source", "ongoing")}


# --- the pages -------------------------------------------------------------------------------


def test_dashboard_shows_live_calls_ended_per_minute_refusals_and_backlog(
    pages_app: Flask, operator: Pages
) -> None:
    now = datetime.now(UTC)
    start(pages_app, A_SUBJECT)
    start(pages_app, B_SUBJECT, hook=None)
    for minutes_ago in (2, 2, 3):
        token = start(pages_app, B_SUBJECT, now=now - timedelta(minutes=minutes_ago, seconds=5))
        end(pages_app, token, now=now - timedelta(minutes=minutes_ago))
    old = start(pages_app, B_SUBJECT, now=now - timedelta(minutes=90), hook=None)
    end(pages_app, old, now=now - timedelta(minutes=80))  # outside the hour

    r = operator.get("/calls/console")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    page = text_of(r)
    assert "Live calls: 2 queued 2 ringing 0 in-progress 0" in page
    assert (
        "Calls ended in the last hour: 3 completed 0 busy 0 no-answer 0 failed 0 canceled 3 "
        "expired 0" in page
    )
    minute = (now - timedelta(minutes=2)).strftime("%H:%M")
    earlier = (now - timedelta(minutes=3)).strftime("%H:%M")
    assert f"{minute} 0 0 0 0 2 0 2 {earlier} 0 0 0 0 1 0 1" in page
    assert "Limit refusals:" in page and "counted by this process since it started" in page
    # the events with a URL are pending: the live call's 1, the 3 ended calls' 2 each
    assert "Webhook backlog pending 7 failed 0 oldest pending" in page


def test_dashboard_counts_a_limit_refusal(
    pages_app: Flask, operator: Pages, forge: Callable[..., str]
) -> None:
    from tests.call_api.helpers import good_claims
    from tests.conftest import bearer

    before = int(re.search(r"Limit refusals: (\d+)", text_of(operator.get("/calls/console")))[1])
    token = forge(good_claims(sub=A_SUBJECT))
    api = pages_app.test_client()
    for _ in range(DEFAULT_LIMIT):
        assert (
            api.post("/rest/call", data={"number": NUMBER}, headers=bearer(token)).status_code
            == 201
        )
    assert api.post("/rest/call", data={"number": NUMBER}, headers=bearer(token)).status_code == 409
    after = int(re.search(r"Limit refusals: (\d+)", text_of(operator.get("/calls/console")))[1])
    assert after == before + 1


def test_users_page_looks_up_a_subject(pages_app: Flask, operator: Pages) -> None:
    start(pages_app, A_SUBJECT, client_id="app-7")
    r = operator.get("/calls/console/users", query_string={"subject": A_SUBJECT})
    assert r.status_code == 200
    page = text_of(r)
    assert f"User {A_SUBJECT} Limit 2 live calls (the default) Live calls now 1" in page
    assert "This user's latest calls" in page and "app-7" in page
    assert "Return to the default limit" not in page  # nothing to reset


def test_set_limit_is_saved_shown_and_audited(
    pages_app: Flask, operator: Pages, olga: UserInfo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clickcall.call_api.audit")
    r = operator.post(
        "/calls/console/users/limit",
        {"subject": A_SUBJECT, "max_ongoing": "4", "action": "set", "csrf_token": csrf(operator)},
    )
    assert r.status_code == 303
    assert r.headers["Location"] == f"/calls/console/users?subject={A_SUBJECT}&done=limit-set"
    assert limit_of(pages_app, A_SUBJECT) == {
        "max_ongoing": 4,
        "limit_source": "user",
        "ongoing": 0,
    }
    page = text_of(operator.get(r.headers["Location"]))
    assert "The limit is saved." in page
    assert "Limit 4 live calls (set for this user)" in page
    expected = by(
        olga,
        action="limit.set",
        target=f"user:{A_SUBJECT}",
        outcome="ok",
        details={"default": DEFAULT_LIMIT, "max_ongoing": 4, "previous": None},
    )
    assert audit_entries(pages_app) == [expected]
    [line] = [r for r in caplog.records if r.name == "clickcall.call_api.audit"]
    logged = dict(line.fields)  # type: ignore[attr-defined]
    assert logged.pop("at")
    assert logged == {"event": "audit", "service": "call_api", **expected}

    r = operator.post(
        "/calls/console/users/limit",
        {"subject": A_SUBJECT, "action": "reset", "csrf_token": csrf(operator)},
    )
    assert r.status_code == 303
    assert r.headers["Location"] == f"/calls/console/users?subject={A_SUBJECT}&done=limit-reset"
    assert limit_of(pages_app, A_SUBJECT)["limit_source"] == "default"
    assert audit_entries(pages_app)[1] == by(
        olga,
        action="limit.reset",
        target=f"user:{A_SUBJECT}",
        outcome="ok",
        details={"default": DEFAULT_LIMIT, "previous": 4},
    )


def test_set_limit_refuses_a_bad_number_and_changes_nothing(
    pages_app: Flask, operator: Pages
) -> None:
    for value in ("", "-1", "10001", "two", "1.5", "²", "9" * 30):
        r = operator.post(
            "/calls/console/users/limit",
            {
                "subject": A_SUBJECT,
                "max_ongoing": value,
                "action": "set",
                "csrf_token": csrf(operator),
            },
        )
        assert r.status_code == 400, value
        assert "The limit must be a whole number from 0 to 10000." in text_of(r)
        assert 'aria-invalid="true"' in r.get_data(as_text=True)
    empty = operator.post(
        "/calls/console/users/limit",
        {"subject": " ", "max_ongoing": "1", "action": "set", "csrf_token": csrf(operator)},
    )
    assert empty.status_code == 400
    assert "A subject is 1–255 characters." in text_of(empty)
    assert limit_of(pages_app, A_SUBJECT)["limit_source"] == "default"
    assert audit_entries(pages_app) == []


def test_live_calls_of_every_user_paginated(pages_app: Flask, operator: Pages) -> None:
    now = datetime.now(UTC)
    tokens = [
        start(pages_app, f"user-{i:02}", client_id=f"app-{i % 3}", now=now - timedelta(seconds=i))
        for i in range(22)
    ]
    end(pages_app, tokens[0])  # ended: not listed
    first = operator.get("/calls/console/live")
    assert first.status_code == 200
    html = first.get_data(as_text=True)
    assert "Page 1 of 2 · 21 in all" in text_of(first)
    listed = re.findall(r"/calls/console/calls/([A-Za-z0-9_-]+)/end", html)
    assert listed == tokens[1:21]  # newest first
    assert 'href="/calls/console/live?page=2" rel="next"' in html
    second = operator.get("/calls/console/live?page=2")
    assert re.findall(
        r"/calls/console/calls/([A-Za-z0-9_-]+)/end", second.get_data(as_text=True)
    ) == [tokens[21]]
    assert "user-21" in text_of(second) and "app-0" in text_of(second)


def test_force_end_asks_for_confirmation_then_ends_with_reason_admin(
    pages_app: Flask, operator: Pages, olga: UserInfo
) -> None:
    token = start(pages_app, A_SUBJECT, client_id="app-1")
    confirm = operator.get(f"/calls/console/calls/{token}/end")
    assert confirm.status_code == 200
    assert "Force-end this call?" in text_of(confirm)
    assert 'name="confirm" value="yes" required' in confirm.get_data(as_text=True)

    unconfirmed = operator.post(f"/calls/console/calls/{token}/end", {"csrf_token": csrf(operator)})
    assert unconfirmed.status_code == 400
    assert "Tick the box to confirm that this call should be ended." in text_of(unconfirmed)
    assert stored(pages_app, token)["state"] == "queued"
    assert audit_entries(pages_app) == []

    r = operator.post(
        f"/calls/console/calls/{token}/end", {"confirm": "yes", "csrf_token": csrf(operator)}
    )
    assert r.status_code == 303
    assert r.headers["Location"] == f"/calls/console/calls/{token}?done=ended"
    call = stored(pages_app, token)
    assert (call["status"], call["state"], call["end_reason"]) == ("ended", "canceled", "admin")
    last = events_of(pages_app, token)[-1]
    assert (last["type"], last["source"], last["delivery"]) == ("call.canceled", "admin", "pending")
    assert last["payload"]["data"]["end_reason"] == "admin"
    details = {
        "subject": A_SUBJECT,
        "client_id": "app-1",
        "state_before": "queued",
        "state": "canceled",
        "end_reason": "admin",
        "changed": True,
    }
    target = f"call:{token}"
    assert audit_entries(pages_app) == [
        by(olga, action="call.force_end", target=target, outcome="ok", details=details)
    ]
    assert "The call is ended (end_reason admin)." in text_of(operator.get(r.headers["Location"]))

    again = operator.post(
        f"/calls/console/calls/{token}/end", {"confirm": "yes", "csrf_token": csrf(operator)}
    )
    assert again.headers["Location"] == f"/calls/console/calls/{token}?done=already-ended"
    assert len(events_of(pages_app, token)) == 2  # no second event
    assert audit_entries(pages_app)[1]["details"] == {
        **details,
        "state_before": "canceled",
        "changed": False,
    }


def test_force_end_of_an_unknown_call_is_a_404_and_audited_as_refused(
    pages_app: Flask, operator: Pages, olga: UserInfo
) -> None:
    r = operator.post(
        "/calls/console/calls/no-such-call/end", {"confirm": "yes", "csrf_token": csrf(operator)}
    )
    assert r.status_code == 404
    assert "Not found No such call." in text_of(r)
    assert audit_entries(pages_app) == [
        by(
            olga,
            action="call.force_end",
            target="call:no-such-call",
            outcome="refused",
            details={"error": "not_found", "error_description": "No such call."},
        )
    ]
    assert operator.get("/calls/console/calls/no-such-call/end").status_code == 404


def test_history_filters_by_subject_app_state_and_days(pages_app: Flask, operator: Pages) -> None:
    day = (datetime.now(UTC) - timedelta(days=10)).replace(hour=12, minute=0)
    today, yesterday = day.strftime("%Y-%m-%d"), (day - timedelta(days=1)).strftime("%Y-%m-%d")
    a1 = start(pages_app, A_SUBJECT, client_id="app-1", now=day - timedelta(days=1))
    end(pages_app, a1, now=day - timedelta(days=1) + timedelta(seconds=5))
    a2 = start(pages_app, A_SUBJECT, client_id="app-2", now=day)
    end(pages_app, a2, now=day + timedelta(seconds=5))
    b1 = start(pages_app, B_SUBJECT, client_id="app-1")

    def listed(**args: str) -> list[str]:
        r = operator.get("/calls/console/history", query_string=args)
        assert r.status_code == 200, text_of(r)
        return re.findall(r'/calls/console/calls/([A-Za-z0-9_-]+)"', r.get_data(as_text=True))

    assert listed() == [b1, a2, a1]
    assert listed(subject=A_SUBJECT) == [a2, a1]
    assert listed(client_id="app-1") == [b1, a1]
    assert listed(state="ongoing") == [b1]
    assert listed(state="queued") == [b1]
    assert listed(state="canceled", subject=A_SUBJECT) == [a2, a1]
    assert listed(**{"from": today, "to": today}) == [a2]
    assert listed(**{"to": yesterday}) == [a1]
    assert listed(**{"from": yesterday}) == [b1, a2, a1]
    assert listed(subject=B_SUBJECT, client_id="app-2") == []


BAD_FILTERS = [
    ({"from": "04/03/2026"}, "A date is written YYYY-MM-DD."),
    ({"to": "2026-02-30"}, "A date is written YYYY-MM-DD."),
    ({"from": "2026-03-05", "to": "2026-03-04"}, "The end date is before the start date."),
    ({"state": "sleeping"}, "Choose a state from the list."),
    ({"subject": "x" * 256}, "A subject is at most 255 characters."),
    ({"client_id": "x" * 65}, "An app's client ID is at most 64 characters."),
]


def test_history_refuses_bad_filters_saying_which(pages_app: Flask, operator: Pages) -> None:
    for args, message in BAD_FILTERS:
        r = operator.get("/calls/console/history", query_string=args)
        assert r.status_code == 400, args
        page = text_of(r)
        assert message in page and "Correct the filters marked above." in page, args
        assert 'aria-invalid="true"' in r.get_data(as_text=True)


def test_call_page_shows_its_webhook_deliveries(pages_app: Flask, operator: Pages) -> None:
    token = start(pages_app, A_SUBJECT)
    end(pages_app, token)
    r = operator.get(f"/calls/console/calls/{token}")
    assert r.status_code == 200
    page = text_of(r)
    [queued, canceled] = events_of(pages_app, token)
    assert f"call.queued pending Event id {queued['event_id']}" in page
    assert f"call.canceled pending Event id {canceled['event_id']}" in page
    assert "Attempts 0" in page
    assert page.count("Redeliver call.") == 2
    assert "Force-end this call" not in page  # it ended


def test_webhooks_page_lists_undelivered_events_and_finds_a_call(
    pages_app: Flask, operator: Pages
) -> None:
    token = start(pages_app, A_SUBJECT, client_id="app-3")
    start(pages_app, A_SUBJECT, hook=None)  # nothing to deliver
    r = operator.get("/calls/console/webhooks")
    assert r.status_code == 200
    assert "call.queued pending 0 app-3" in text_of(r)
    assert "Page 1 of 1 · 1 in all" in text_of(r)
    found = operator.get("/calls/console/webhooks", query_string={"token_call": token})
    assert found.status_code == 303
    assert found.headers["Location"] == f"/calls/console/calls/{token}"


def test_redeliver_makes_the_event_pending_again_and_is_audited(
    pages_app: Flask, operator: Pages, olga: UserInfo
) -> None:
    from call_api.extensions import db
    from call_api.models import CallEvent

    token = start(pages_app, A_SUBJECT)
    [event] = events_of(pages_app, token)
    with pages_app.app_context():  # as the worker leaves it after giving up
        row = db.session.scalar(db.select(CallEvent).where(CallEvent.event_id == event["event_id"]))
        row.delivery, row.attempts, row.next_attempt_at = "failed", 7, None
        db.session.commit()

    r = operator.post(
        f"/calls/console/events/{event['event_id']}/redeliver", {"csrf_token": csrf(operator)}
    )
    assert r.status_code == 303
    assert r.headers["Location"] == f"/calls/console/calls/{token}?done=redelivered"
    [after] = events_of(pages_app, token)
    assert (after["delivery"], after["attempts"], after["url"]) == ("pending", 0, HOOK)
    assert after["next_attempt_at"] is not None
    assert audit_entries(pages_app) == [
        by(
            olga,
            action="event.redeliver",
            target=f"event:{event['event_id']}",
            outcome="ok",
            details={
                "token_call": token,
                "type": "call.queued",
                "delivery_before": "failed",
                "attempts_before": 7,
            },
        )
    ]
    assert "The event is pending again" in text_of(operator.get(r.headers["Location"]))


def test_redeliver_with_nowhere_to_send_is_refused_and_audited(
    pages_app: Flask, operator: Pages, olga: UserInfo
) -> None:
    token = start(pages_app, A_SUBJECT, hook=None)
    [event] = events_of(pages_app, token)
    r = operator.post(
        f"/calls/console/events/{event['event_id']}/redeliver", {"csrf_token": csrf(operator)}
    )
    assert r.status_code == 409
    assert "This event has nowhere to go: the client has no webhook URL." in text_of(r)
    assert events_of(pages_app, token)[0]["delivery"] == "none"
    assert audit_entries(pages_app) == [
        by(
            olga,
            action="event.redeliver",
            target=f"event:{event['event_id']}",
            outcome="refused",
            details={
                "token_call": token,
                "type": "call.queued",
                "delivery_before": "none",
                "attempts_before": 0,
                "error": "conflict",
                "error_description": "This event has nowhere to go: the client has no webhook URL.",
            },
        )
    ]
    unknown = operator.post(
        "/calls/console/events/msg_nope/redeliver", {"csrf_token": csrf(operator)}
    )
    assert unknown.status_code == 404
    assert audit_entries(pages_app)[1]["outcome"] == "refused"


def test_audit_page_lists_entries_newest_first_and_filters(
    pages_app: Flask, operator: Pages
) -> None:
    for value in ("1", "2"):
        operator.post(
            "/calls/console/users/limit",
            {
                "subject": A_SUBJECT,
                "max_ongoing": value,
                "action": "set",
                "csrf_token": csrf(operator),
            },
        )
    operator.post(
        "/calls/console/users/limit",
        {"subject": A_SUBJECT, "action": "reset", "csrf_token": csrf(operator)},
    )
    r = operator.get("/calls/console/audit")
    assert r.status_code == 200
    page = text_of(r)
    assert page.index("limit.reset") < page.index("max_ongoing : 2") < page.index("max_ongoing : 1")
    assert f"olga {operator.user.id} limit.set user:{A_SUBJECT} ok 127.0.0.1" in page  # type: ignore[attr-defined]
    only = text_of(operator.get("/calls/console/audit", query_string={"action": "limit.reset"}))
    assert "limit.reset" in only and "limit.set" not in only
    assert "Page 1 of 1 · 1 in all" in only
    none = text_of(operator.get("/calls/console/audit", query_string={"actor": "nobody"}))
    assert "No console action matches." in none


def test_console_pages_fit_the_frame_and_link_each_other(operator: Pages) -> None:
    """Every page has one h1 (the main landmark's name), the console's navigation with the
    current page marked, and no inline script or style (the CSP allows neither)."""
    for path in (
        "/calls/console",
        "/calls/console/users",
        "/calls/console/live",
        "/calls/console/history",
        "/calls/console/webhooks",
        "/calls/console/audit",
    ):
        r = operator.get(path)
        html = r.get_data(as_text=True)
        assert r.status_code == 200, path
        assert html.count("<h1 ") == 1 and 'id="page-title"' in html, path
        assert f'<a href="{path}" aria-current="page">' in html, path
        assert not re.search(r"<script(?![^>]*\ssrc=)", html) and "style=" not in html, path
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_audit_details_are_json_objects(pages_app: Flask, operator: Pages) -> None:
    """The stored ``details`` column is a JSON object (the console and logs read it back)."""
    from sqlalchemy import select

    from call_api.extensions import db
    from call_api.models import AuditEvent

    operator.post(
        "/calls/console/users/limit",
        {"subject": A_SUBJECT, "max_ongoing": "3", "action": "set", "csrf_token": csrf(operator)},
    )
    with pages_app.app_context():
        [details] = db.session.scalars(select(AuditEvent.details)).all()
    assert json.loads(details) == {"default": DEFAULT_LIMIT, "max_ongoing": 3, "previous": None}
