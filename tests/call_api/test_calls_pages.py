"""The person's call pages (call_api/web/pages.py): live calls and their JSON feed, hanging
up with a confirmation, the history with its filters and pages — each for the signed-in
person only (the authorisation rules in detail: tests/security/test_calls_pages.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from tests.call_api.helpers import NUMBER, event_rows, set_columns, set_started_at, start
from tests.call_api.web_helpers import Pages, forward_to, pages_config, register_pages_client
from tests.conftest import ClientInfo, Flow, UserInfo, make_client, make_user

OTHER_NUMBER = "+14155550199"


@pytest.fixture
def pages_app(auth_app: Flask, make_call_app: Any) -> Flask:
    app: Flask = make_call_app(**pages_config(register_pages_client(auth_app)))
    forward_to(app, auth_app)
    return app


@pytest.fixture
def alice(pages_app: Flask, auth_app: Flask, user: UserInfo) -> Pages:
    browser = Pages(pages_app, auth_app)
    browser.sign_in(user)
    return browser


@pytest.fixture
def app_token(auth_app: Flask, user: UserInfo, web_client: ClientInfo) -> str:
    """An access token of another app (``web_client``) for alice: it makes her calls."""
    return str(Flow(auth_app.test_client()).token(user, web_client)["access_token"])


def text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr data-token="([^"]+)"', html)


# --- /calls -------------------------------------------------------------------------------


def test_the_live_page_lists_the_persons_live_calls_across_apps(
    alice: Pages, pages_app: Flask, auth_app: Flask, user: UserInfo, app_token: str
) -> None:
    api = pages_app.test_client()
    other_app = make_client(auth_app, "Second app")
    other_token = Flow(auth_app.test_client()).token(user, other_app)["access_token"]
    ended = start(api, app_token, "+14155550111")
    api.put(
        "/rest/call",
        data={"token_call": ended["token_call"]},
        headers={"Authorization": f"Bearer {app_token}"},
    )
    first = start(api, app_token)
    second = start(api, other_token, OTHER_NUMBER)
    r = alice.get("/calls")
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    html = text(r)
    assert rows_of(html) == [first["token_call"], second["token_call"]]
    assert NUMBER in html and OTHER_NUMBER in html
    assert "+14155550111" not in html
    assert f"<code>{first['client_id']}</code>" in html
    assert f"<code>{other_app.client_id}</code>" in html
    assert "You have 2 live calls." in html
    assert html.count(">Queued</span>") == 2
    assert f'href="/calls/{first["token_call"]}/hangup"' in html
    # Works without JavaScript: a Refresh link; the script is a file (CSP: no inline code).
    assert '<a href="/calls" id="live-refresh">Refresh</a>' in html
    assert '<script src="/static/calls.js" defer></script>' in html
    assert "<script>" not in html and " on" + "click=" not in html


def test_the_live_page_shows_state_and_answer_time(
    alice: Pages, pages_app: Flask, app_token: str
) -> None:
    call = start(pages_app.test_client(), app_token)
    answered = datetime(2026, 11, 30, 9, 15, 4, tzinfo=UTC)
    set_columns(pages_app, call["token_call"], state="in-progress", answered_at=answered)
    html = text(alice.get("/calls"))
    assert ">In progress</span>" in html
    assert '<time datetime="2026-11-30T09:15:04.000Z">2026-11-30 09:15:04 UTC</time>' in html


def test_no_live_calls(alice: Pages) -> None:
    html = text(alice.get("/calls"))
    assert "You have no live calls." in html
    assert '<table class="calls-table" id="live-table" hidden>' in html


def test_live_json_is_what_the_script_polls(alice: Pages, pages_app: Flask, app_token: str) -> None:
    call = start(pages_app.test_client(), app_token)
    r = alice.get("/calls/live.json")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json
    assert body["count"] == 1
    assert set(body) == {"calls", "count", "generated_at"}
    [row] = body["calls"]
    assert row["token_call"] == call["token_call"]
    assert row["number"] == NUMBER
    assert row["app"] == call["client_id"]
    assert row["state"] == "queued"
    assert row["state_label"] == "Queued"
    assert row["started_at"] == call["started_at"]
    assert row["answered_at"] is None
    assert row["hangup_url"] == f"/calls/{call['token_call']}/hangup"
    assert row["live"] is True


def test_the_script_is_served(pages_app: Flask) -> None:
    r = pages_app.test_client().get("/static/calls.js")
    data = r.data
    r.close()
    assert r.status_code == 200
    assert r.mimetype in ("text/javascript", "application/javascript")
    assert b'getAttribute("data-source")' in data  # the URL comes from the page
    assert b"textContent" in data and b"innerHTML" not in data


def test_the_shared_stylesheet_is_served(pages_app: Flask) -> None:
    r = pages_app.test_client().get("/static/ui/style.css")
    data = r.data
    r.close()
    assert r.status_code == 200
    assert b".calls-table" in data


def test_an_overdue_call_is_not_shown_as_live(
    alice: Pages, pages_app: Flask, app_token: str
) -> None:
    call = start(pages_app.test_client(), app_token)
    set_started_at(pages_app, call["token_call"], datetime.now(UTC) - timedelta(days=1))
    assert rows_of(text(alice.get("/calls"))) == []
    assert alice.get("/calls/live.json").json["count"] == 0


# --- hanging up ---------------------------------------------------------------------------


def test_hanging_up_asks_for_a_confirmation_first(
    alice: Pages, pages_app: Flask, app_token: str
) -> None:
    call = start(pages_app.test_client(), app_token)
    r = alice.get(f"/calls/{call['token_call']}/hangup")
    assert r.status_code == 200
    html = text(r)
    assert f"Hang up the call to {NUMBER}?" in html
    assert 'name="confirm" value="yes"' in html
    assert 'name="csrf_token"' in html
    # A POST without the confirmation changes nothing.
    r = alice.post(f"/calls/{call['token_call']}/hangup")
    assert r.status_code == 400
    assert "Nothing was changed" in text(r)
    assert [e["type"] for e in event_rows(pages_app, call["token_call"])] == ["call.queued"]


def test_hanging_up_ends_the_call_as_the_app_would(
    alice: Pages, pages_app: Flask, app_token: str
) -> None:
    api = pages_app.test_client()
    call = start(api, app_token)
    r = alice.post(f"/calls/{call['token_call']}/hangup", {"confirm": "yes"})
    assert r.status_code == 303
    assert r.headers["Location"] == f"/calls?ended={call['token_call']}"
    now = api.get(
        "/rest/call",
        query_string={"token_call": call["token_call"]},
        headers={"Authorization": f"Bearer {app_token}"},
    ).json
    assert now["status"] == "ended"
    assert now["state"] == "canceled"  # not answered yet
    assert now["end_reason"] == "hangup"
    events = event_rows(pages_app, call["token_call"])
    assert [e["type"] for e in events] == ["call.queued", "call.canceled"]
    assert events[-1]["source"] == "app"  # the app's webhook reports it like its own hang-up
    html = text(alice.get(r.headers["Location"]))
    assert f"The call to {NUMBER} has ended (canceled)." in html
    assert rows_of(html) == []


def test_hanging_up_an_answered_call_completes_it(
    alice: Pages, pages_app: Flask, app_token: str
) -> None:
    call = start(pages_app.test_client(), app_token)
    set_columns(pages_app, call["token_call"], state="in-progress", answered_at=datetime.now(UTC))
    alice.post(f"/calls/{call['token_call']}/hangup", {"confirm": "yes"})
    assert event_rows(pages_app, call["token_call"])[-1]["type"] == "call.completed"


def test_hanging_up_an_ended_call_changes_nothing(
    alice: Pages, pages_app: Flask, app_token: str
) -> None:
    call = start(pages_app.test_client(), app_token)
    alice.post(f"/calls/{call['token_call']}/hangup", {"confirm": "yes"})
    page = alice.get(f"/calls/{call['token_call']}/hangup")
    assert page.status_code == 200
    assert "This call has already ended" in text(page)
    assert 'name="confirm"' not in text(page)
    r = alice.post(f"/calls/{call['token_call']}/hangup", {"confirm": "yes"})
    assert r.status_code == 303
    assert len(event_rows(pages_app, call["token_call"])) == 2


def test_an_unknown_call_is_a_404_page(alice: Pages) -> None:
    for token_call in ("no-such-call", "x" * 65, "a%00b"):
        for r in (
            alice.get(f"/calls/{token_call}/hangup"),
            alice.post(f"/calls/{token_call}/hangup", {"confirm": "yes"}),
        ):
            assert r.status_code == 404, token_call
            assert r.mimetype == "text/html"
            assert "No such call" in text(r)


# --- /calls/history -----------------------------------------------------------------------


def make_history(pages_app: Flask, token: str, count: int, number: str = NUMBER) -> list[str]:
    """``count`` ended calls, one a day back from 2026-11-30 12:00 UTC (newest first)."""
    api = pages_app.test_client()
    made = []
    for day in range(count):
        call = start(api, token, number)
        api.put(
            "/rest/call",
            data={"token_call": call["token_call"]},
            headers={"Authorization": f"Bearer {token}"},
        )
        set_started_at(
            pages_app, call["token_call"], datetime(2026, 11, 30, 12, tzinfo=UTC) - timedelta(day)
        )
        made.append(call["token_call"])
    return made


def history_tokens(html: str) -> list[str]:
    return re.findall(r'datetime="([^"]+)">[^<]+</time></td>\s*<td data-label="Number"', html)


def test_history_lists_every_call_newest_first(
    alice: Pages, pages_app: Flask, app_token: str
) -> None:
    make_history(pages_app, app_token, 3)
    live = start(pages_app.test_client(), app_token)
    r = alice.get("/calls/history")
    assert r.status_code == 200
    html = text(r)
    assert "4 calls; page 1 of 1." in html
    assert history_tokens(html) == [
        live["started_at"],
        "2026-11-30T12:00:00.000Z",
        "2026-11-29T12:00:00.000Z",
        "2026-11-28T12:00:00.000Z",
    ]
    assert html.count(">Canceled</span>") == 3
    assert f'href="/calls/{live["token_call"]}/hangup"' in html  # a live one can be hung up


def test_history_filters_by_state_app_and_days(
    alice: Pages, pages_app: Flask, auth_app: Flask, user: UserInfo, app_token: str
) -> None:
    make_history(pages_app, app_token, 5)
    other_app = make_client(auth_app, "Second app")
    other_token = Flow(auth_app.test_client()).token(user, other_app)["access_token"]
    start(pages_app.test_client(), other_token, OTHER_NUMBER)

    def shown(**args: str) -> str:
        r = alice.get("/calls/history", query_string=args)
        assert r.status_code == 200, text(r)
        return text(r)

    assert "1 call match these filters" in shown(state="ongoing")
    assert "1 call match these filters" in shown(state="queued")
    assert "5 calls match these filters" in shown(state="canceled")
    assert "5 calls match these filters" in shown(state="ended")
    assert "0 calls match these filters." in shown(state="completed")
    assert "1 call match these filters" in shown(app=other_app.client_id)
    html = shown(**{"from": "2026-11-28", "to": "2026-11-29"})
    assert history_tokens(html) == ["2026-11-29T12:00:00.000Z", "2026-11-28T12:00:00.000Z"]
    assert "2 calls match" in shown(**{"from": "2026-11-29", "to": "2026-11-30"}, state="ended")
    assert "4 calls match" in shown(to="2026-11-29", app="")  # to: the whole day included
    # The form keeps the choices; the app filter offers the person's apps.
    html = shown(state="canceled", app=other_app.client_id)
    assert '<option value="canceled" selected>Canceled</option>' in html
    assert f'<option value="{other_app.client_id}" selected>' in html
    assert "Clear the filters" in html


def test_history_is_paginated(alice: Pages, pages_app: Flask, app_token: str) -> None:
    made = make_history(pages_app, app_token, 23)
    html = text(alice.get("/calls/history"))
    assert "23 calls; page 1 of 2." in html
    assert len(history_tokens(html)) == 20
    assert 'href="/calls/history?page=2" rel="next"' in html
    assert 'rel="prev"' not in html
    html = text(alice.get("/calls/history", query_string={"page": "2"}))
    assert len(history_tokens(html)) == 3
    assert 'href="/calls/history" rel="prev"' in html
    assert 'rel="next"' not in html
    # Filters stay on the other pages' links.
    html = text(alice.get("/calls/history", query_string={"state": "canceled"}))
    assert 'href="/calls/history?state=canceled&amp;page=2" rel="next"' in html
    # Past the last page: said plainly, with a way back.
    r = alice.get("/calls/history", query_string={"page": "9"})
    assert r.status_code == 200
    assert "There is no page 9." in text(r)
    assert 'href="/calls/history">Go to the first page' in text(r)
    assert len(made) == 23


BAD_FILTERS = [
    ({"state": "ringingg"}, "state", "State must be one of: all, ongoing, ended, queued"),
    ({"from": "2026-13-01"}, "from", "From must be a date written YYYY-MM-DD"),
    ({"to": "yesterday"}, "to", "To must be a date written YYYY-MM-DD"),
    ({"from": "2026-11-30", "to": "2026-11-01"}, "to", "To must be the same day as From"),
    ({"page": "0"}, "page", "Page must be a whole number from 1 to 100000."),
    ({"page": "-1"}, "page", "Page must be a whole number"),
    ({"page": "1e3"}, "page", "Page must be a whole number"),
    ({"page": "99999999999999999999"}, "page", "Page must be a whole number"),
    ({"page": "\u0661"}, "page", "Page must be a whole number"),  # an Arabic-Indic 1
    ({"app": "x" * 65}, "app", "The app must be a client id of at most 64"),
    ({"app": "a\x00b"}, "app", "The app must be a client id"),
    ({"from": "20261130"}, "from", "From must be a date"),
]


def test_bad_filters_are_explained(alice: Pages) -> None:
    for args, field, message in BAD_FILTERS:
        r = alice.get("/calls/history", query_string=args)
        assert r.status_code == 400, args
        html = text(r)
        assert "These filters cannot be used" in html
        assert f'<a href="#filter-{field}">{message}' in html, args
        assert 'role="alert"' in html
        assert "calls-table" not in html
    # Several at once: each is listed.
    r = alice.get("/calls/history", query_string={"state": "x", "page": "0", "to": "x"})
    assert text(r).count('<li><a href="#filter-') == 3


def test_the_last_day_of_the_calendar_is_a_valid_to(alice: Pages) -> None:
    r = alice.get("/calls/history", query_string={"to": "9999-12-31", "from": "0001-01-01"})
    assert r.status_code == 200


# --- the frame ----------------------------------------------------------------------------


def test_pages_have_the_security_headers(alice: Pages) -> None:
    for path in ("/calls", "/calls/history", "/calls/live.json", "/calls/nowhere"):
        r = alice.get(path)
        assert r.headers["Cache-Control"] == "no-store", path
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], path
        assert r.headers["Content-Security-Policy"].startswith("default-src 'self'"), path
        assert r.headers["X-Frame-Options"] == "DENY", path
        assert r.headers["Referrer-Policy"] == "no-referrer", path
        assert r.headers["X-Content-Type-Options"] == "nosniff", path


def test_an_unknown_page_is_an_html_404(alice: Pages) -> None:
    r = alice.get("/calls/nowhere/at/all")
    assert r.status_code == 404
    assert r.mimetype == "text/html"
    assert "Page not found" in text(r)


def test_a_wrong_method_is_an_html_405(alice: Pages) -> None:
    r = alice.calls.put("/calls/history", data={"csrf_token": alice.csrf()})
    assert r.status_code == 405
    assert r.mimetype == "text/html"


def test_the_api_keeps_answering_json(pages_app: Flask) -> None:
    r = pages_app.test_client().get("/rest/call")
    assert r.status_code == 401
    assert r.mimetype == "application/json"


def test_pages_have_landmarks_and_one_h1(alice: Pages, pages_app: Flask, app_token: str) -> None:
    call = start(pages_app.test_client(), app_token)
    for path in ("/calls", "/calls/history", f"/calls/{call['token_call']}/hangup"):
        html = text(alice.get(path))
        assert html.count("<h1 ") == 1, path
        assert '<h1 id="page-title">' in html, path
        assert '<nav class="calls-nav" aria-label="Call pages">' in html, path
        assert '<html lang="en">' in html
        assert 'name="viewport" content="width=device-width, initial-scale=1"' in html


def test_an_operator_sees_the_console_link_and_a_user_does_not(
    alice: Pages, pages_app: Flask, auth_app: Flask
) -> None:
    assert "/calls/console" not in text(alice.get("/calls"))
    operator = make_user(auth_app, "olga", "olga-password", role="admin")
    browser = Pages(pages_app, auth_app)
    browser.sign_in(operator)
    assert '<a href="/calls/console">Console</a>' in text(browser.get("/calls"))
