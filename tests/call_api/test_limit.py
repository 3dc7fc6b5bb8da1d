"""The per-user ongoing-call limit: default, across apps, set by CLI/admin, and expiry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from call_api.cli import main as call_cli
from tests.call_api.helpers import (
    NUMBER,
    OTHER_NUMBER,
    assert_ongoing,
    count_calls,
    set_started_at,
    start,
)
from tests.conftest import bearer, make_client, make_user


def refused(limit: int, ongoing: int) -> dict[str, object]:
    return {
        "error": "max_calls_exceeded",
        "error_description": f"You already have {ongoing} ongoing call(s); the limit is {limit}.",
        "max_ongoing": limit,
        "ongoing": ongoing,
    }


def end(api, token: str, token_call: str) -> dict[str, object]:
    r = api.put("/rest/call", data={"token_call": token_call}, headers=bearer(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    return dict(r.json)


def test_default_limit_is_two(api, call_app, user_token, user):
    """Two ongoing calls are allowed; the third is a 409 with the limit and count, and is
    not stored; ending one lets the next one in."""
    first = start(api, user_token, NUMBER)
    start(api, user_token, OTHER_NUMBER)
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused(2, 2))
    assert "Location" not in r.headers
    assert count_calls(call_app, user.id) == 2

    end(api, user_token, first["token_call"])
    start(api, user_token, NUMBER)
    r = api.post("/rest/call", json={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused(2, 2))


def test_limit_counts_calls_from_every_app_of_the_user(
    api, auth_app, mint, user, user_token, web_client
):
    """Calls started through one app count against the same user's calls in another app."""
    mobile = make_client(auth_app, "Mobile app")
    mobile_token = mint(user, mobile)
    first = start(api, user_token, NUMBER)
    start(api, user_token, OTHER_NUMBER)

    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(mobile_token))
    assert (r.status_code, r.json) == (409, refused(2, 2))

    end(api, user_token, first["token_call"])
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(mobile_token))
    assert r.status_code == 201, r.get_data(as_text=True)
    assert_ongoing(r.json, NUMBER, mobile.client_id, user.id)

    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused(2, 2))


def test_limit_is_per_user(api, auth_app, mint, web_client, user_token):
    """One user at the limit does not stop another user."""
    start(api, user_token)
    start(api, user_token)
    bob = make_user(auth_app, "bob", "bob-password")
    bob_token = mint(bob, web_client)
    start(api, bob_token)
    start(api, bob_token)
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(bob_token))
    assert (r.status_code, r.json) == (409, refused(2, 2))


def test_cli_limits_set(api, call_app, user_token, user):
    """`call-api limits set SUBJECT N` raises (or lowers) one user's limit."""
    runner = call_app.test_cli_runner()
    result = runner.invoke(call_cli, ["limits", "set", user.id, "3"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"subject": user.id, "max_ongoing": 3}

    for _ in range(3):
        start(api, user_token)
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused(3, 3))

    result = runner.invoke(call_cli, ["limits", "show", user.id])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "subject": user.id,
        "max_ongoing": 3,
        "limit_source": "user",
        "ongoing": 3,
    }

    result = runner.invoke(call_cli, ["limits", "set", user.id, "1"])
    assert result.exit_code == 0, result.output
    # Lowering the limit ends no call, it only refuses new ones.
    assert len(api.get("/rest/call", headers=bearer(user_token)).json["calls"]) == 3
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused(1, 3))


def test_cli_limits_set_rejects_bad_values(call_app, user):
    """The CLI refuses a non-integer or out-of-range N with a usage error and changes nothing."""
    runner = call_app.test_cli_runner()
    for bad in ("x", "10001", "1.5"):
        result = runner.invoke(call_cli, ["limits", "set", user.id, bad])
        assert result.exit_code == 2, (bad, result.output)
        assert "Invalid value for 'N'" in result.output
    result = runner.invoke(call_cli, ["limits", "show", user.id])
    assert json.loads(result.output) == {
        "subject": user.id,
        "max_ongoing": 2,
        "limit_source": "default",
        "ongoing": 0,
    }


def test_admin_sets_the_limit(api, user_token, admin_token, user):
    """PUT /admin/users/<sub>/limit takes effect on the next POST."""
    start(api, user_token)
    r = api.put(
        f"/admin/users/{user.id}/limit", json={"max_ongoing": 1}, headers=bearer(admin_token)
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused(1, 1))

    r = api.put(
        f"/admin/users/{user.id}/limit", json={"max_ongoing": 4}, headers=bearer(admin_token)
    )
    assert r.status_code == 200
    for _ in range(3):
        start(api, user_token)
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused(4, 4))


def test_limit_zero_refuses_everything(api, call_app, user_token, admin_token, user, make_call_app):
    """A limit of 0 (per user, or as the default) refuses every call."""
    r = api.put(
        f"/admin/users/{user.id}/limit", json={"max_ongoing": 0}, headers=bearer(admin_token)
    )
    assert r.status_code == 200
    for number in (NUMBER, OTHER_NUMBER):
        r = api.post("/rest/call", data={"number": number}, headers=bearer(user_token))
        assert (r.status_code, r.json) == (409, refused(0, 0))
    assert count_calls(call_app) == 0

    r = api.put(
        f"/admin/users/{user.id}/limit", json={"max_ongoing": None}, headers=bearer(admin_token)
    )
    assert r.status_code == 200
    closed = make_call_app(CALL_MAX_ONGOING_DEFAULT=0).test_client()
    r = closed.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused(0, 0))
    assert count_calls(call_app) == 0


PAST = datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
MAX_DURATION = 60  # small, yet far longer than any test takes: no call expires by itself


def test_overdue_call_reads_as_expired(make_call_app, user_token, user, web_client):
    """A call older than CALL_MAX_DURATION reads as ended/expired (state expired), ended at
    start + maximum, in GET one, and leaves the ongoing list."""
    app = make_call_app(CALL_MAX_DURATION=MAX_DURATION)
    api = app.test_client()
    old = start(api, user_token, NUMBER)
    young = start(api, user_token, OTHER_NUMBER)
    set_started_at(app, old["token_call"], PAST)

    r = api.get(f"/rest/call?token_call={old['token_call']}", headers=bearer(user_token))
    assert r.status_code == 200
    assert r.json == {
        **old,
        "status": "ended",
        "started_at": "2020-01-02T03:04:05.678Z",
        "ended_at": "2020-01-02T03:05:05.678Z",
        "duration": 0,  # counted from the answer: never answered
        "end_reason": "expired",
        "state": "expired",
    }
    expired = r.json
    assert api.get("/rest/call", headers=bearer(user_token)).json == {"calls": [young]}
    # Ending it now changes nothing: it ended when it expired.
    r = api.put("/rest/call", data={"token_call": old["token_call"]}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (200, expired)


def test_overdue_calls_stop_counting_toward_the_limit(make_call_app, user_token, user):
    """At the limit, a POST succeeds once an earlier call is overdue (no read needed first),
    and the overdue call is recorded as expired."""
    app = make_call_app(CALL_MAX_DURATION=MAX_DURATION)
    api = app.test_client()
    old = start(api, user_token, NUMBER)
    start(api, user_token, OTHER_NUMBER)
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused(2, 2))

    set_started_at(app, old["token_call"], PAST)
    start(api, user_token, NUMBER)
    r = api.get(f"/rest/call?token_call={old['token_call']}", headers=bearer(user_token))
    assert (r.json["status"], r.json["end_reason"], r.json["ended_at"]) == (
        "ended",
        "expired",
        "2020-01-02T03:05:05.678Z",
    )


def test_put_on_an_overdue_call_records_expiry_not_hangup(make_call_app, user_token):
    """Hanging up a call that is already overdue records when it expired, not now."""
    app = make_call_app(CALL_MAX_DURATION=MAX_DURATION)
    api = app.test_client()
    old = start(api, user_token, NUMBER)
    set_started_at(app, old["token_call"], PAST)
    r = api.put("/rest/call", data={"token_call": old["token_call"]}, headers=bearer(user_token))
    assert r.status_code == 200
    assert r.json == {
        **old,
        "status": "ended",
        "started_at": "2020-01-02T03:04:05.678Z",
        "ended_at": "2020-01-02T03:05:05.678Z",
        "duration": 0,  # counted from the answer: never answered
        "end_reason": "expired",
        "state": "expired",
    }


def test_expire_calls_cli(make_call_app, auth_app, mint, web_client, user_token, user):
    """`call-api expire-calls` ends every user's overdue calls and prints {"expired": N};
    a second run finds none."""
    app = make_call_app(CALL_MAX_DURATION=MAX_DURATION)
    api = app.test_client()
    bob = make_user(auth_app, "bob", "bob-password")
    bob_token = mint(bob, web_client)
    a_old = start(api, user_token, NUMBER)
    a_young = start(api, user_token, OTHER_NUMBER)
    b_old = start(api, bob_token, NUMBER)
    set_started_at(app, a_old["token_call"], PAST)
    set_started_at(app, b_old["token_call"], PAST - timedelta(days=30))

    runner = app.test_cli_runner()
    result = runner.invoke(call_cli, ["expire-calls"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"expired": 2}
    result = runner.invoke(call_cli, ["expire-calls"])
    assert json.loads(result.output) == {"expired": 0}

    from sqlalchemy import select

    from call_api.models import Call

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        rows = {
            c.token_call: (c.status, c.state, c.end_reason)
            for c in db.session.scalars(select(Call))
        }
    assert rows == {
        a_old["token_call"]: ("ended", "expired", "expired"),
        a_young["token_call"]: ("ongoing", "queued", None),
        b_old["token_call"]: ("ended", "expired", "expired"),
    }
    r = api.get(f"/rest/call?token_call={b_old['token_call']}", headers=bearer(bob_token))
    assert r.json["ended_at"] == "2019-12-03T03:05:05.678Z"
    assert (r.json["state"], r.json["duration"]) == ("expired", 0)  # never answered
