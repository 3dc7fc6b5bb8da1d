"""The call lifecycle over HTTP: every legal path, its stamps and events (the outbox), the
refused transitions, the limit counting every live state, and the per-call options."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.call_api.helpers import (
    NUMBER,
    OTHER_NUMBER,
    as_text,
    assert_ended,
    assert_ongoing,
    count_calls,
    count_events,
    event_rows,
    parse_iso,
    set_columns,
    start,
    without_lease,
    xml_fields,
    xml_root,
)
from tests.conftest import bearer


def get(api, token: str, token_call: str) -> dict:
    r = api.get(f"/rest/call?token_call={token_call}", headers=bearer(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    return dict(r.json)


def put(api, token: str, token_call: str) -> dict:
    r = api.put("/rest/call", data={"token_call": token_call}, headers=bearer(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    return dict(r.json)


def refused_transition(state: str, requested: str) -> dict[str, str]:
    return {
        "error": "invalid_transition",
        "error_description": f"A call that is {state} cannot become {requested}.",
        "state": state,
        "requested": requested,
    }


def whole_ms_ago(seconds: int) -> datetime:
    """``seconds`` ago, on a whole millisecond (as the API writes times), so the duration
    the API computes equals the one computed here from its millisecond ``ended_at``."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000) - timedelta(seconds=seconds)


def seconds_between(start: datetime, end: str) -> int:
    return int((parse_iso(end) - start).total_seconds())


def history(app, token_call: str) -> list[tuple[str, str, str | None]]:
    return [(e["type"], e["source"], e["dialer_event"]) for e in event_rows(app, token_call)]


def assert_payloads(app, token_call: str, snapshots: list[dict]) -> None:
    """Each event's payload is ``{"type", "timestamp", "data"}`` with ``data`` the call as it
    was right after that transition (``snapshots``, in order)."""
    events = event_rows(app, token_call)
    assert len(events) == len(snapshots)
    for event, snapshot in zip(events, snapshots, strict=True):
        payload = event["payload"]
        assert set(payload) == {"type", "timestamp", "data"}
        assert payload["type"] == event["type"] == f"call.{snapshot['state']}"
        assert payload["data"] == snapshot
        parse_iso(payload["timestamp"])
        assert event["event_id"].startswith("msg_")
        assert (event["client_id"], event["delivery"], event["url"]) == (
            snapshot["client_id"],
            "none",  # no webhook URL registered: kept as history only
            None,
        )


def test_answered_call_goes_queued_ringing_in_progress_completed(call_app, api, user_token, dialer):
    """queued → ringing → in-progress → completed: each step stamped once, the original's
    status ongoing until the end, duration from the answer; one event per transition, in
    order, each carrying the call as it became."""
    call = start(api, user_token)
    assert (call["state"], call["status"]) == ("queued", "ongoing")
    [claimed] = dialer.claim()
    assert without_lease(claimed) == call

    ringing = without_lease(dialer.event(call["token_call"], "ringing"))
    assert ringing == {**call, "state": "ringing", "ringing_at": ringing["ringing_at"]}
    assert parse_iso(ringing["ringing_at"]) >= parse_iso(call["started_at"])
    assert get(api, user_token, call["token_call"]) == ringing

    answered = without_lease(dialer.event(call["token_call"], "answered"))
    assert answered == {**ringing, "state": "in-progress", "answered_at": answered["answered_at"]}
    assert parse_iso(answered["answered_at"]) >= parse_iso(ringing["ringing_at"])
    assert get(api, user_token, call["token_call"]) == answered

    # Seven seconds of talk, without waiting for them.
    talk_from = whole_ms_ago(7)
    set_columns(call_app, call["token_call"], answered_at=talk_from)
    moved = get(api, user_token, call["token_call"])

    completed = without_lease(dialer.event(call["token_call"], "hangup"))
    assert completed == {
        **moved,
        "status": "ended",
        "state": "completed",
        "ended_at": completed["ended_at"],
        "duration": completed["duration"],
        "end_reason": "remote",
    }
    assert completed["duration"] >= 7
    assert completed["duration"] == seconds_between(talk_from, completed["ended_at"])
    assert get(api, user_token, call["token_call"]) == completed
    assert api.get("/rest/call", headers=bearer(user_token)).json == {"calls": []}

    assert history(call_app, call["token_call"]) == [
        ("call.queued", "app", None),
        ("call.ringing", "dialer", "ringing"),
        ("call.in-progress", "dialer", "answered"),
        ("call.completed", "dialer", "hangup"),
    ]
    assert_payloads(call_app, call["token_call"], [call, ringing, answered, completed])


@pytest.mark.parametrize(
    "events, state, end_reason",
    [
        (["ringing", "busy"], "busy", "busy"),
        (["busy"], "busy", "busy"),
        (["ringing", "no-answer"], "no-answer", "no-answer"),
        (["failed"], "failed", "failed"),
        (["ringing", "failed"], "failed", "failed"),
        (["answered", "failed"], "failed", "failed"),
    ],
)
def test_unanswered_endings(call_app, api, user_token, dialer, events, state, end_reason):
    """busy, no-answer and failed end the call (end_reason the same word); duration 0 when
    it was never answered; one event per step."""
    call = start(api, user_token)
    dialer.claim()
    body: dict = {}
    for name in events:
        body = without_lease(dialer.event(call["token_call"], name))
    assert body["state"] == state
    assert (body["status"], body["end_reason"]) == ("ended", end_reason)
    if "answered" in events:
        answered = parse_iso(body["answered_at"])
        assert body["duration"] == int((parse_iso(body["ended_at"]) - answered).total_seconds())
    else:
        assert (body["answered_at"], body["duration"]) == (None, 0)
    assert (body["ringing_at"] is not None) == ("ringing" in events)
    assert get(api, user_token, call["token_call"]) == body
    targets = {"ringing": "ringing", "answered": "in-progress"}
    assert history(call_app, call["token_call"]) == [("call.queued", "app", None)] + [
        (f"call.{targets.get(name, name)}", "dialer", name) for name in events
    ]


@pytest.mark.parametrize("before", [[], ["ringing"]], ids=["queued", "ringing"])
@pytest.mark.parametrize("claimed", [False, True], ids=["unclaimed", "claimed"])
def test_app_hang_up_before_the_answer_cancels(call_app, api, user_token, dialer, before, claimed):
    """PUT by the app on a call not yet answered (queued, claimed or not, or ringing) ends it
    canceled, end_reason hangup, duration 0; the original's PUT meaning is kept."""
    call = start(api, user_token)
    if claimed or before:
        dialer.claim()
    for name in before:
        call = without_lease(dialer.event(call["token_call"], name))
    ended = put(api, user_token, call["token_call"])
    assert_ended(ended, call, "hangup")
    assert ended["state"] == "canceled"
    assert put(api, user_token, call["token_call"]) == ended  # idempotent, no second event
    assert history(call_app, call["token_call"])[-1] == ("call.canceled", "app", None)
    assert len(event_rows(call_app, call["token_call"])) == 2 + len(before)


def test_app_hang_up_after_the_answer_completes(call_app, api, user_token, dialer):
    """PUT on an in-progress call completes it (end_reason hangup), duration from the answer."""
    call = start(api, user_token)
    dialer.claim()
    dialer.event(call["token_call"], "ringing")
    dialer.event(call["token_call"], "answered")
    answered_at = whole_ms_ago(3)
    set_columns(call_app, call["token_call"], answered_at=answered_at)
    answered = get(api, user_token, call["token_call"])
    ended = put(api, user_token, call["token_call"])
    assert_ended(ended, answered, "hangup")
    assert ended["state"] == "completed"
    assert ended["duration"] == seconds_between(answered_at, ended["ended_at"]) >= 3
    assert history(call_app, call["token_call"]) == [
        ("call.queued", "app", None),
        ("call.ringing", "dialer", "ringing"),
        ("call.in-progress", "dialer", "answered"),
        ("call.completed", "app", None),
    ]


@pytest.mark.parametrize("answered", [False, True], ids=["queued", "in-progress"])
def test_admin_force_end(call_app, api, user_token, admin_token, dialer, answered):
    """An admin's force-end cancels a call not yet answered and completes an answered one,
    end_reason admin, event source admin."""
    call = start(api, user_token)
    if answered:
        dialer.claim()
        call = without_lease(dialer.event(call["token_call"], "answered"))
    r = api.post(f"/admin/calls/{call['token_call']}/end", headers=bearer(admin_token))
    assert r.status_code == 200
    assert_ended(r.json, call, "admin")
    assert r.json["state"] == ("completed" if answered else "canceled")
    assert history(call_app, call["token_call"])[-1] == (
        f"call.{r.json['state']}",
        "admin",
        None,
    )


PAST = datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_an_answered_call_expires_with_duration_from_the_answer(
    make_call_app, user_token, dialer_token
):
    """An answered call older than CALL_MAX_DURATION reads as expired, ended at start +
    maximum; its duration counts from the answer; the event is the system's, stamped then."""
    from tests.call_api.helpers import Dialer

    app = make_call_app(CALL_MAX_DURATION=60)
    api = app.test_client()
    call = start(api, user_token)
    assert call["time_limit"] == 60
    dialer = Dialer(api, dialer_token)
    dialer.claim()
    dialer.event(call["token_call"], "answered")
    set_columns(
        app,
        call["token_call"],
        started_at=PAST,
        answered_at=PAST + timedelta(seconds=10),
        lease_expires_at=datetime.now(UTC) + timedelta(seconds=30),
    )
    expired = get(api, user_token, call["token_call"])
    assert expired == {
        **call,
        "status": "ended",
        "state": "expired",
        "started_at": "2020-01-02T03:04:05.678Z",
        "answered_at": "2020-01-02T03:04:15.678Z",
        "ended_at": "2020-01-02T03:05:05.678Z",
        "duration": 50,
        "end_reason": "expired",
    }
    events = event_rows(app, call["token_call"])
    assert [(e["type"], e["source"]) for e in events] == [
        ("call.queued", "app"),
        ("call.in-progress", "dialer"),
        ("call.expired", "system"),
    ]
    assert events[-1]["payload"]["timestamp"] == "2020-01-02T03:05:05.678Z"
    assert events[-1]["payload"]["data"] == expired
    # The dialer holding it learns it in its next poll; its late hang-up is refused.
    assert dialer.poll(max_calls=0)["ended"] == [
        {"token_call": call["token_call"], "state": "expired", "end_reason": "expired"}
    ]
    r = dialer.event_response(call["token_call"], "hangup")
    assert (r.status_code, r.json) == (409, refused_transition("expired", "completed"))


def test_an_answered_call_past_its_time_limit_completes(call_app, api, user_token, dialer):
    """The API ends a call its dialer kept talking past ``time_limit`` (plus a grace):
    completed, end_reason time-limit, ended at the deadline, duration = time_limit + grace;
    a call still inside its limit is left alone."""
    from call_api.calls import TIME_LIMIT_GRACE

    call, other = (
        api.post("/rest/call", data={"number": n, "time_limit": "30"}, headers=bearer(user_token))
        for n in (NUMBER, OTHER_NUMBER)
    )
    assert call.status_code == other.status_code == 201
    call, other = call.json, other.json
    dialer.claim(2)
    dialer.event(call["token_call"], "answered")
    answered = without_lease(dialer.event(other["token_call"], "answered"))
    assert get(api, user_token, other["token_call"]) == answered  # inside its limit
    answered_at = whole_ms_ago(40)
    deadline = answered_at + timedelta(seconds=30 + TIME_LIMIT_GRACE)
    set_columns(
        call_app,
        call["token_call"],
        started_at=answered_at - timedelta(seconds=2),
        answered_at=answered_at,
        talk_deadline=deadline,
    )
    ended = get(api, user_token, call["token_call"])
    assert (ended["state"], ended["status"], ended["end_reason"]) == (
        "completed",
        "ended",
        "time-limit",
    )
    assert parse_iso(ended["ended_at"]) == deadline
    assert ended["duration"] == 30 + TIME_LIMIT_GRACE
    assert history(call_app, call["token_call"])[-1] == ("call.completed", "system", None)
    assert [c["token_call"] for c in dialer.poll(max_calls=0)["ended"]] == [call["token_call"]]


def test_illegal_transitions_are_409_and_write_nothing(
    call_app, api, user_token, admin_token, user, dialer
):
    """An event the state machine does not allow now is a 409 invalid_transition naming
    both states; the call and its history are unchanged (the refusal writes no event)."""
    r = api.put(
        f"/admin/users/{user.id}/limit", json={"max_ongoing": 10}, headers=bearer(admin_token)
    )
    assert r.status_code == 200
    names = ("queued", "ringing", "in-progress", "completed", "canceled")
    calls = {name: start(api, user_token) for name in names}
    dialer.claim(len(calls))
    dialer.event(calls["ringing"]["token_call"], "ringing")
    dialer.event(calls["in-progress"]["token_call"], "answered")
    dialer.event(calls["completed"]["token_call"], "answered")
    put(api, user_token, calls["completed"]["token_call"])
    put(api, user_token, calls["canceled"]["token_call"])

    cases = [
        ("queued", "no-answer", "no-answer"),
        ("queued", "hangup", "completed"),
        ("ringing", "hangup", "completed"),
        ("in-progress", "ringing", "ringing"),
        ("in-progress", "busy", "busy"),
        ("in-progress", "no-answer", "no-answer"),
        ("completed", "ringing", "ringing"),
        ("completed", "busy", "busy"),
        ("canceled", "answered", "in-progress"),
        ("canceled", "ringing", "ringing"),
    ]
    for state, event, requested in cases:
        token_call = calls[state]["token_call"]
        before = get(api, user_token, token_call)
        rows = event_rows(call_app, token_call)
        r = dialer.event_response(token_call, event)
        assert (r.status_code, r.json) == (409, refused_transition(state, requested)), event
        assert "Dialer-Event-Applied" not in r.headers
        assert get(api, user_token, token_call) == before
        assert event_rows(call_app, token_call) == rows


def refused_limit(limit: int, ongoing: int) -> dict[str, object]:
    return {
        "error": "max_calls_exceeded",
        "error_description": f"You already have {ongoing} ongoing call(s); the limit is {limit}.",
        "max_ongoing": limit,
        "ongoing": ongoing,
    }


def test_every_live_state_counts_against_the_limit(
    call_app, api, user_token, admin_token, user, dialer
):
    """queued, ringing and in-progress calls all hold a slot (the seed's list shows them
    all, in order, each with its state); a call that reaches a final state frees its slot."""
    r = api.put(
        f"/admin/users/{user.id}/limit", json={"max_ongoing": 3}, headers=bearer(admin_token)
    )
    assert r.status_code == 200
    queued, ringing, talking = (start(api, user_token) for _ in range(3))
    dialer.claim(3)
    ringing = without_lease(dialer.event(ringing["token_call"], "ringing"))
    talking = without_lease(dialer.event(talking["token_call"], "answered"))

    events = count_events(call_app)
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused_limit(3, 3))
    assert (count_calls(call_app), count_events(call_app)) == (3, events)  # nothing written
    r = api.get("/rest/call", headers=bearer(user_token))
    assert r.json == {"calls": [queued, ringing, talking]}
    assert [c["state"] for c in r.json["calls"]] == ["queued", "ringing", "in-progress"]
    assert {c["status"] for c in r.json["calls"]} == {"ongoing"}

    # A final state reached through the dialer frees the slot, whatever the state was.
    dialer.event(ringing["token_call"], "busy")
    fourth = start(api, user_token, OTHER_NUMBER)
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (409, refused_limit(3, 3))
    dialer.event(talking["token_call"], "hangup")
    fifth = start(api, user_token)
    assert api.get("/rest/call", headers=bearer(user_token)).json == {
        "calls": [queued, fourth, fifth]
    }
    summary = api.get(f"/admin/users/{user.id}", headers=bearer(admin_token)).json
    assert summary["ongoing"] == 3


def bad_seconds(name: str, high: int) -> dict[str, str]:
    return {
        "error": "invalid_request",
        "error_description": f"'{name}' must be a whole number of seconds from 1 to {high}.",
    }


@pytest.mark.parametrize(
    "field, value, high",
    [
        ("time_limit", 14401, 14400),
        ("time_limit", 0, 14400),
        ("time_limit", -5, 14400),
        ("time_limit", 1.5, 14400),
        ("time_limit", True, 14400),
        ("time_limit", "60s", 14400),
        ("time_limit", "1e3", 14400),
        ("time_limit", [60], 14400),
        ("ring_timeout", 121, 120),
        ("ring_timeout", 0, 120),
        ("ring_timeout", 30.0, 120),
        ("ring_timeout", "soon", 120),
    ],
)
def test_bad_time_limit_or_ring_timeout_is_400(call_app, api, user_token, field, value, high):
    """time_limit above CALL_MAX_DURATION (or not a whole positive number), ring_timeout out
    of 1–120: a 400 naming the bounds, and no call."""
    r = api.post("/rest/call", json={"number": NUMBER, field: value}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (400, bad_seconds(field, high))
    assert count_calls(call_app) == 0


def test_time_limit_is_bounded_by_this_services_maximum(make_call_app, user_token, user):
    """The bound is CALL_MAX_DURATION as configured, in form bodies too; without
    time_limit a call gets the maximum."""
    app = make_call_app(CALL_MAX_DURATION=600)
    api = app.test_client()
    r = api.post(
        "/rest/call", data={"number": NUMBER, "time_limit": "601"}, headers=bearer(user_token)
    )
    assert (r.status_code, r.json) == (400, bad_seconds("time_limit", 600))
    r = api.post(
        "/rest/call", data={"number": NUMBER, "time_limit": "600"}, headers=bearer(user_token)
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.json["time_limit"] == 600
    assert start(api, user_token)["time_limit"] == 600


def test_call_options_are_kept(call_app, api, user_token, user, web_client):
    """time_limit and ring_timeout at their bounds (JSON numbers or form text), an empty
    form value meaning the default, and a status_callback: stored and returned as given;
    the call's events go to its status_callback (pending delivery)."""
    hook = "http://127.0.0.1:9/hooks/call"
    r = api.post(
        "/rest/call",
        json={"number": NUMBER, "time_limit": 1, "ring_timeout": 120, "status_callback": hook},
        headers=bearer(user_token),
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    assert_ongoing(
        r.json,
        NUMBER,
        web_client.client_id,
        user.id,
        time_limit=1,
        ring_timeout=120,
        status_callback=hook,
    )
    assert [(e["url"], e["delivery"]) for e in event_rows(call_app, r.json["token_call"])] == [
        (hook, "pending")
    ]
    r = api.post(
        "/rest/call",
        data={"number": NUMBER, "time_limit": "14400", "ring_timeout": "1", "status_callback": ""},
        headers=bearer(user_token),
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    assert_ongoing(r.json, NUMBER, web_client.client_id, user.id, time_limit=14400, ring_timeout=1)
    assert [(e["url"], e["delivery"]) for e in event_rows(call_app, r.json["token_call"])] == [
        (None, "none")
    ]


def test_new_fields_in_xml(call_app, api, user_token, dialer):
    """XML carries every new field: nil while unset, text once stamped, the same values as
    the JSON."""
    r = api.post(
        "/rest/call?format=xml",
        data={"number": NUMBER, "time_limit": "90", "ring_timeout": "15"},
        headers=bearer(user_token),
    )
    assert r.status_code == 201 and r.mimetype == "application/xml"
    created = xml_fields(xml_root(r.get_data()))
    token_call = created["token_call"]
    assert {k: created[k] for k in ("state", "ringing_at", "answered_at")} == {
        "state": "queued",
        "ringing_at": None,
        "answered_at": None,
    }
    assert (created["time_limit"], created["ring_timeout"], created["status_callback"]) == (
        "90",
        "15",
        None,
    )
    assert created == as_text(get(api, user_token, token_call))

    dialer.claim()
    dialer.event(token_call, "ringing")
    dialer.event(token_call, "answered")
    r = api.get(f"/rest/call?token_call={token_call}&format=xml", headers=bearer(user_token))
    talking = xml_fields(xml_root(r.get_data()))
    assert talking["state"] == "in-progress"
    parse_iso(talking["ringing_at"])
    parse_iso(talking["answered_at"])
    assert talking == as_text(get(api, user_token, token_call))

    r = api.put(
        "/rest/call?format=xml", data={"token_call": token_call}, headers=bearer(user_token)
    )
    ended = xml_fields(xml_root(r.get_data()))
    assert (ended["state"], ended["status"], ended["end_reason"]) == (
        "completed",
        "ended",
        "hangup",
    )
    assert ended == as_text(get(api, user_token, token_call))


REUSED = {
    "error": "idempotency_key_reused",
    "error_description": "This Idempotency-Key was already used with a different request body.",
}


def test_idempotency_key_covers_the_options(call_app, api, user_token):
    """The same key with the same options replays the call; with another time_limit (or
    options where there were none) it is a 422, and nothing is added."""

    def post(key: str, **fields):
        headers = {**bearer(user_token), "Idempotency-Key": key}
        return api.post("/rest/call", json={"number": NUMBER, **fields}, headers=headers)

    first = post("with-options", time_limit=60)
    assert first.status_code == 201
    again = post("with-options", time_limit=60)
    assert (again.status_code, again.json) == (201, first.json)
    assert again.headers["Idempotent-Replayed"] == "true"
    for fields in ({"time_limit": 61}, {}, {"time_limit": 60, "ring_timeout": 10}):
        r = post("with-options", **fields)
        assert (r.status_code, r.json) == (422, REUSED), fields

    plain = post("without-options")
    assert plain.status_code == 201
    r = post("without-options", time_limit=60)
    assert (r.status_code, r.json) == (422, REUSED)
    assert count_calls(call_app) == 2
    assert len(event_rows(call_app, first.json["token_call"])) == 1  # a replay records nothing
