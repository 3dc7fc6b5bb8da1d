"""The dialer interface (scope ``dialer``): polls claim queued calls under a lease, events
move them (idempotently), lost leases requeue or fail them, and a dialer learns the app's
hang-up from its next (long) poll."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.call_api.helpers import (
    NOT_FOUND,
    NUMBER,
    Dialer,
    event_rows,
    parse_iso,
    set_columns,
    start,
    without_lease,
)
from tests.conftest import bearer

DIALER_ID_RULE = "dialer_id must be 1–128 characters: letters, digits, '.', '_', ':' or '-'."
EVENT_RULE = "event must be one of: ringing, answered, busy, no-answer, failed, hangup."
MAX_CALLS_RULE = "'max_calls' must be an integer from 0 to 50."
WAIT_RULE = "'wait' must be a number from 0 to 25."


def bad_request(description: str) -> dict[str, str]:
    return {"error": "invalid_request", "error_description": description}


def lease_lost(dialer_id: str, state: str) -> dict[str, str]:
    return {
        "error": "lease_lost",
        "error_description": f"Dialer '{dialer_id}' does not hold this call's lease (it "
        "expired or another dialer holds it); drop the call.",
        "state": state,
    }


def get(api, token: str, token_call: str) -> dict:
    r = api.get(f"/rest/call?token_call={token_call}", headers=bearer(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    return dict(r.json)


def lapse(app, token_call: str) -> None:
    """The holder's lease ran out (as if its dialer stopped polling a while ago)."""
    set_columns(app, token_call, lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))


@pytest.fixture
def roomy(api, admin_token, user):
    """The user may hold up to 20 live calls."""
    r = api.put(
        f"/admin/users/{user.id}/limit", json={"max_ongoing": 20}, headers=bearer(admin_token)
    )
    assert r.status_code == 200


def test_poll_claims_queued_calls_with_a_lease(call_app, api, user_token, dialer, roomy):
    """A poll claims up to max_calls queued calls, oldest first, each with its lease
    (dialer_id, lease_expires_at = now + lease_seconds, claims); claimed calls are not
    claimed again, and a poll renews the leases the dialer holds."""
    calls = [start(api, user_token) for _ in range(3)]
    before = datetime.now(UTC)
    body = dialer.poll(max_calls=2)
    after = datetime.now(UTC)
    assert set(body) == {"dialer_id", "lease_seconds", "calls", "held", "ended"}
    assert (body["dialer_id"], body["lease_seconds"], body["ended"]) == ("sim-1", 30, [])
    assert body["held"] == []  # claimed by this poll: in "calls", held from the next one
    assert [without_lease(c) for c in body["calls"]] == calls[:2]
    for claimed in body["calls"]:
        assert (claimed["dialer_id"], claimed["claims"]) == ("sim-1", 1)
        lease = parse_iso(claimed["lease_expires_at"])
        assert before + timedelta(seconds=29.999) <= lease <= after + timedelta(seconds=30)

    # 0.0 is the integer 0 (JSON Schema's sense): it claims nothing.
    assert dialer.poll(max_calls=0.0)["calls"] == []
    # The default max_calls is 1; the third call is the only one left.
    r = dialer.api.post("/dialer/poll", json={"dialer_id": "sim-1"}, headers=bearer(dialer.token))
    assert r.status_code == 200
    assert [without_lease(c) for c in r.json["calls"]] == calls[2:]
    assert dialer.poll(max_calls=50) == {
        "dialer_id": "sim-1",
        "lease_seconds": 30,
        "calls": [],
        "held": [c["token_call"] for c in calls],
        "ended": [],
    }

    # max_calls 0 only renews: a lease moved close to its end is pushed back.
    set_columns(
        call_app, calls[0]["token_call"], lease_expires_at=datetime.now(UTC) + timedelta(seconds=2)
    )
    renewed_from = datetime.now(UTC)
    assert dialer.poll(max_calls=0)["calls"] == []
    held = dialer.event(calls[0]["token_call"], "ringing")
    assert parse_iso(held["lease_expires_at"]) >= renewed_from + timedelta(seconds=29.999)
    # Polling claims nothing and writes no event.
    assert [len(event_rows(call_app, c["token_call"])) for c in calls] == [2, 1, 1]


def test_two_dialers_never_get_the_same_call(api, user_token, dialer_token, roomy):
    """Two dialer_ids of one client, polling in turn, split the queue between them."""
    calls = [start(api, user_token) for _ in range(5)]
    one, two = Dialer(api, dialer_token, "sim-1"), Dialer(api, dialer_token, "sim-2")
    first = one.poll(max_calls=2)["calls"]
    second = two.poll(max_calls=10)["calls"]
    assert [c["dialer_id"] for c in first] == ["sim-1"] * 2
    assert [c["dialer_id"] for c in second] == ["sim-2"] * 3
    assert [c["token_call"] for c in first + second] == [c["token_call"] for c in calls]
    assert one.poll(max_calls=10)["calls"] == []


def _poll_together(app, token: str, replicas: int, batch: int) -> dict[int, list[str]]:
    """``replicas`` threads, each with its own test client (so its own app context and
    database session), released together to poll for ``batch`` calls; what each claimed."""
    barrier = threading.Barrier(replicas)
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def poll(n: int) -> None:
        try:
            client = app.test_client()
            barrier.wait(timeout=10)
            r = client.post(
                "/dialer/poll",
                json={"dialer_id": f"replica-{n}", "max_calls": batch},
                headers=bearer(token),
            )
            assert r.status_code == 200, r.get_data(as_text=True)
            results[n] = [c["token_call"] for c in r.json["calls"]]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=poll, args=(n,)) for n in range(replicas)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert errors == []
    return results


def test_concurrent_polls_claim_every_call_exactly_once(
    call_app, api, user_token, dialer_token, roomy
):
    """Several dialers polling at the same instant, each through its own request (its own
    app context and database connection), each get a full batch and no call is claimed
    twice (without a row lock on the claim, two polls would take the same calls)."""
    replicas, batch, rounds = 4, 2, 3
    claimed: list[str] = []
    for _ in range(rounds):
        calls = [start(api, user_token)["token_call"] for _ in range(replicas * batch)]
        results = _poll_together(call_app, dialer_token, replicas, batch)
        assert {n: len(got) for n, got in results.items()} == {n: batch for n in range(replicas)}
        got = [token for tokens in results.values() for token in tokens]
        assert sorted(got) == sorted(calls)
        claimed += got
        # Free the user's slots for the next round (the app hangs up).
        for token_call in calls:
            api.put("/rest/call", data={"token_call": token_call}, headers=bearer(user_token))
    assert len(claimed) == len(set(claimed)) == rounds * replicas * batch


def test_a_poll_skips_a_call_another_transaction_holds(
    call_app, databases, api, user_token, dialer
):
    """PostgreSQL: while another transaction holds the oldest queued call's row lock (a
    replica in the middle of claiming it), a poll does not wait for it: it takes the next
    call at once (SKIP LOCKED), and the held one is still there for later."""
    if databases.backend != "postgresql":
        pytest.skip("SQLite serializes writers: there is no row lock to skip")
    from sqlalchemy import select

    from call_api.models import Call

    first, second = start(api, user_token), start(api, user_token)
    db = call_app.extensions["sqlalchemy"]
    with call_app.app_context():
        engine = db.engine
    with engine.connect() as conn:
        locking = conn.begin()
        conn.execute(
            select(Call.id).where(Call.token_call == first["token_call"]).with_for_update()
        )
        thread, out = _poll_in_thread(
            call_app, dialer.token, {"dialer_id": "sim-1", "max_calls": 1}
        )
        thread.join(timeout=3)
        finished = not thread.is_alive()
        locking.rollback()
    thread.join(timeout=10)
    assert finished, "the poll waited for a row another transaction had locked"
    assert out["status"] == 200
    assert [c["token_call"] for c in out["body"]["calls"]] == [second["token_call"]]
    assert [c["token_call"] for c in dialer.claim()] == [first["token_call"]]


def test_events_are_idempotent(call_app, api, user_token, dialer):
    """A retried event is a 200 with the call unchanged, Dialer-Event-Applied: false, and
    no new event row; the first time it is true."""
    call = start(api, user_token)
    dialer.claim()
    for event in ("ringing", "answered", "hangup"):
        first = dialer.event_response(call["token_call"], event)
        assert (first.status_code, first.headers["Dialer-Event-Applied"]) == (200, "true")
        rows = event_rows(call_app, call["token_call"])
        retry = dialer.event_response(call["token_call"], event)
        assert (retry.status_code, retry.headers["Dialer-Event-Applied"]) == (200, "false")
        assert retry.json == first.json
        assert event_rows(call_app, call["token_call"]) == rows
    # An earlier event retried after a later one also changes nothing.
    retry = dialer.event_response(call["token_call"], "ringing")
    assert (retry.status_code, retry.headers["Dialer-Event-Applied"]) == (200, "false")
    assert retry.json["state"] == "completed"
    assert len(event_rows(call_app, call["token_call"])) == 4


def test_another_dialer_id_gets_lease_lost(call_app, api, user_token, dialer_token):
    """A call held by sim-1 is not sim-2's to report on (409 lease_lost), nor sim-1's once
    its lease ran out; the refusals change nothing."""
    call = start(api, user_token)
    one, two = Dialer(api, dialer_token, "sim-1"), Dialer(api, dialer_token, "sim-2")
    one.claim()
    r = two.event_response(call["token_call"], "ringing")
    assert (r.status_code, r.json) == (409, lease_lost("sim-2", "queued"))
    one.event(call["token_call"], "ringing")
    r = two.event_response(call["token_call"], "answered")
    assert (r.status_code, r.json) == (409, lease_lost("sim-2", "ringing"))

    lapse(call_app, call["token_call"])
    r = one.event_response(call["token_call"], "answered")
    assert (r.status_code, r.json) == (409, lease_lost("sim-1", "ringing"))
    assert [e["type"] for e in event_rows(call_app, call["token_call"])] == [
        "call.queued",
        "call.ringing",
    ]


def test_lapsed_lease_requeues_then_fails_a_queued_call(call_app, api, user_token, dialer_token):
    """A queued call whose dialer went silent is claimed again by another dialer (claims
    counts up); after CALL_DIALER_MAX_CLAIMS (3) claims a lapse fails it: failed,
    end_reason dialer-lost, out of the live list."""
    call = start(api, user_token)
    for n in (1, 2, 3):
        [claimed] = Dialer(api, dialer_token, f"sim-{n}").claim()
        assert (claimed["token_call"], claimed["dialer_id"], claimed["claims"]) == (
            call["token_call"],
            f"sim-{n}",
            n,
        )
        lapse(call_app, call["token_call"])
    assert Dialer(api, dialer_token, "sim-4").poll(max_calls=5)["calls"] == []
    failed = get(api, user_token, call["token_call"])
    assert failed == {
        **call,
        "status": "ended",
        "state": "failed",
        "ended_at": failed["ended_at"],
        "duration": 0,
        "end_reason": "dialer-lost",
    }
    assert api.get("/rest/call", headers=bearer(user_token)).json == {"calls": []}
    assert [(e["type"], e["source"]) for e in event_rows(call_app, call["token_call"])] == [
        ("call.queued", "app"),
        ("call.failed", "system"),
    ]


@pytest.mark.parametrize(
    "events, state", [(["ringing"], "failed"), (["ringing", "answered"], "completed")]
)
def test_lapsed_lease_ends_a_ringing_or_answered_call(
    call_app, api, user_token, dialer, events, state
):
    """A ringing call whose dialer is gone fails, an answered one completes (dialer-lost),
    as soon as anyone reads it (lazy settling): never stuck live."""
    call = start(api, user_token)
    dialer.claim()
    for event in events:
        dialer.event(call["token_call"], event)
    lapse(call_app, call["token_call"])
    ended = get(api, user_token, call["token_call"])
    assert (ended["status"], ended["state"], ended["end_reason"]) == ("ended", state, "dialer-lost")
    assert ended["duration"] == (
        0
        if state == "failed"
        else int((parse_iso(ended["ended_at"]) - parse_iso(ended["answered_at"])).total_seconds())
    )
    assert api.get("/rest/call", headers=bearer(user_token)).json == {"calls": []}
    assert event_rows(call_app, call["token_call"])[-1]["type"] == f"call.{state}"
    # The dialer that comes back is told to drop it, and nothing changes.
    r = dialer.event_response(call["token_call"], "hangup")
    assert r.status_code == 409
    assert get(api, user_token, call["token_call"]) == ended


@pytest.mark.parametrize("answered", [False, True], ids=["claimed", "in-progress"])
def test_app_hang_up_is_reported_in_the_next_poll_once(
    call_app, api, user_token, admin_token, dialer, answered
):
    """When the app (or an admin) ends a call a dialer holds, the dialer's next poll lists it
    in `ended` with its final state, exactly once; its late events are refused."""
    app_ends, admin_ends = start(api, user_token), start(api, user_token)
    dialer.claim(2)
    if answered:
        dialer.event(app_ends["token_call"], "answered")
        dialer.event(admin_ends["token_call"], "answered")
    api.put("/rest/call", data={"token_call": app_ends["token_call"]}, headers=bearer(user_token))
    api.post(f"/admin/calls/{admin_ends['token_call']}/end", headers=bearer(admin_token))
    state = "completed" if answered else "canceled"
    assert dialer.poll(max_calls=0)["ended"] == [
        {"token_call": app_ends["token_call"], "state": state, "end_reason": "hangup"},
        {"token_call": admin_ends["token_call"], "state": state, "end_reason": "admin"},
    ]
    assert dialer.poll(max_calls=0)["ended"] == []
    r = dialer.event_response(app_ends["token_call"], "busy" if not answered else "ringing")
    assert r.status_code == 409
    assert r.json["error"] == "invalid_transition"


def _poll_in_thread(app, token: str, payload: dict) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        r = app.test_client().post("/dialer/poll", json=payload, headers=bearer(token))
        out["returned"] = time.monotonic()
        out["status"], out["body"] = r.status_code, r.json

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_long_poll_learns_a_hang_up_within_a_second(call_app, api, user_token, dialer):
    """A poll with wait returns as soon as the app hangs up one of the dialer's calls (well
    within a second), not at the end of its wait."""
    call = start(api, user_token)
    dialer.claim()
    thread, out = _poll_in_thread(
        call_app, dialer.token, {"dialer_id": "sim-1", "max_calls": 0, "wait": 2}
    )
    time.sleep(0.3)  # the poll is waiting
    assert "returned" not in out
    hung_up = time.monotonic()
    api.put("/rest/call", data={"token_call": call["token_call"]}, headers=bearer(user_token))
    thread.join(timeout=5)
    assert out["status"] == 200
    assert out["body"]["ended"] == [
        {"token_call": call["token_call"], "state": "canceled", "end_reason": "hangup"}
    ]
    assert out["returned"] - hung_up < 1.0


def test_long_poll_returns_a_new_call_at_once(call_app, api, user_token, dialer):
    """A waiting poll with room for calls returns the call the app queues meanwhile."""
    thread, out = _poll_in_thread(
        call_app, dialer.token, {"dialer_id": "sim-1", "max_calls": 1, "wait": 2}
    )
    time.sleep(0.3)
    assert "returned" not in out
    queued = time.monotonic()
    call = start(api, user_token)
    thread.join(timeout=5)
    assert out["status"] == 200
    assert [without_lease(c) for c in out["body"]["calls"]] == [call]
    assert out["returned"] - queued < 1.0


def test_a_long_poll_with_nothing_to_say_waits_then_answers_empty(dialer):
    """With nothing to claim or report, a poll holds for about `wait` seconds."""
    began = time.monotonic()
    assert dialer.poll(max_calls=1, wait=0.5) == {
        "dialer_id": "sim-1",
        "lease_seconds": 30,
        "calls": [],
        "held": [],
        "ended": [],
    }
    assert time.monotonic() - began >= 0.3


def test_scope_rules(api, user_token, forge):
    """A person's token with scope dialer is refused (a dialer is a client, not a user); a
    call token is refused on /dialer; no token is a 401."""
    person = forge(scope="dialer")
    for path in ("/dialer/poll", "/dialer/calls/abc/events"):
        r = api.post(path, json={"dialer_id": "sim-1", "event": "ringing"}, headers=bearer(person))
        assert (r.status_code, r.json) == (
            403,
            {
                "error": "insufficient_scope",
                "error_description": "The 'dialer' scope is for a phone system's own client "
                "(client_credentials), not for a token issued on a person's behalf.",
            },
        )
        r = api.post(path, json={"dialer_id": "sim-1"}, headers=bearer(user_token))
        assert (r.status_code, r.json) == (
            403,
            {
                "error": "insufficient_scope",
                "error_description": "This endpoint needs the 'dialer' scope.",
            },
        )
        assert 'scope="dialer"' in r.headers["WWW-Authenticate"]
        r = api.post(path, json={"dialer_id": "sim-1"})
        assert (r.status_code, r.json) == (
            401,
            {"error": "invalid_request", "error_description": "An access token is required."},
        )


def test_dialer_tokens_cannot_use_the_app_api(api, dialer_token):
    """A dialer token is not a call token: /rest/call refuses it."""
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(dialer_token))
    assert r.status_code == 403
    assert r.json["error"] == "insufficient_scope"


def test_calls_of_another_dialer_client_are_404(
    call_app, api, user_token, dialer, dialer_token_for
):
    """A call claimed by another dialer client, one never claimed, and an unknown one are
    all 404 to a dialer client."""
    held = start(api, user_token)
    never = start(api, user_token)
    [claimed] = dialer.claim()
    assert claimed["token_call"] == held["token_call"]
    other = Dialer(api, dialer_token_for("dialer-2"), "sim-1")
    for token_call in (held["token_call"], "x" * 32, "a\x00b"):
        r = other.event_response(token_call, "ringing")
        assert (r.status_code, r.json) == (404, NOT_FOUND), token_call
    # The unclaimed call is not this dialer's either, until it claims it.
    r = dialer.event_response(never["token_call"], "ringing")
    assert (r.status_code, r.json) == (404, NOT_FOUND)
    assert [e["type"] for e in event_rows(call_app, held["token_call"])] == ["call.queued"]


@pytest.mark.parametrize(
    "payload, description",
    [
        ({}, DIALER_ID_RULE),
        ({"dialer_id": ""}, DIALER_ID_RULE),
        ({"dialer_id": "has space"}, DIALER_ID_RULE),
        ({"dialer_id": "d" * 129}, DIALER_ID_RULE),
        ({"dialer_id": 7}, DIALER_ID_RULE),
        ({"dialer_id": "sim/1"}, DIALER_ID_RULE),
        ({"dialer_id": "sim-1", "max_calls": -1}, MAX_CALLS_RULE),
        ({"dialer_id": "sim-1", "max_calls": 51}, MAX_CALLS_RULE),
        ({"dialer_id": "sim-1", "max_calls": 1.5}, MAX_CALLS_RULE),
        ({"dialer_id": "sim-1", "max_calls": 51.0}, MAX_CALLS_RULE),
        ({"dialer_id": "sim-1", "max_calls": 10**50}, MAX_CALLS_RULE),
        ({"dialer_id": "sim-1", "max_calls": "2"}, MAX_CALLS_RULE),
        ({"dialer_id": "sim-1", "max_calls": True}, MAX_CALLS_RULE),
        ({"dialer_id": "sim-1", "max_calls": None}, MAX_CALLS_RULE),
        ({"dialer_id": "sim-1", "wait": -0.1}, WAIT_RULE),
        ({"dialer_id": "sim-1", "wait": 25.5}, WAIT_RULE),
        ({"dialer_id": "sim-1", "wait": "1"}, WAIT_RULE),
        ({"dialer_id": "sim-1", "wait": False}, WAIT_RULE),
    ],
)
def test_bad_poll_is_400(call_app, api, user_token, dialer, payload, description):
    """A bad dialer_id, max_calls or wait is a 400 naming the rule, and claims nothing."""
    call = start(api, user_token)
    r = api.post("/dialer/poll", json=payload, headers=bearer(dialer.token))
    assert (r.status_code, r.json) == (400, bad_request(description))
    assert [without_lease(c) for c in dialer.claim()] == [call]


@pytest.mark.parametrize(
    "payload, description",
    [
        ({"event": "ringing"}, DIALER_ID_RULE),
        ({"dialer_id": "x y", "event": "ringing"}, DIALER_ID_RULE),
        ({"dialer_id": "sim-1"}, EVENT_RULE),
        ({"dialer_id": "sim-1", "event": "Ringing"}, EVENT_RULE),
        ({"dialer_id": "sim-1", "event": "in-progress"}, EVENT_RULE),
        ({"dialer_id": "sim-1", "event": "completed"}, EVENT_RULE),
        ({"dialer_id": "sim-1", "event": 1}, EVENT_RULE),
    ],
)
def test_bad_event_is_400(call_app, api, user_token, dialer, payload, description):
    """A bad dialer_id or an event that is not one of the six is a 400, and changes nothing."""
    call = start(api, user_token)
    dialer.claim()
    r = api.post(
        f"/dialer/calls/{call['token_call']}/events", json=payload, headers=bearer(dialer.token)
    )
    assert (r.status_code, r.json) == (400, bad_request(description))
    assert get(api, user_token, call["token_call"]) == call
    assert len(event_rows(call_app, call["token_call"])) == 1


def test_dialer_bodies_must_be_json_objects(api, dialer):
    """The dialer endpoints take JSON objects; a text body is a 415."""
    r = api.post("/dialer/poll", json=["sim-1"], headers=bearer(dialer.token))
    assert (r.status_code, r.json) == (400, bad_request("The body must be a JSON object."))
    r = api.post(
        "/dialer/poll", data="sim-1", content_type="text/plain", headers=bearer(dialer.token)
    )
    assert r.status_code == 415


def test_a_dialer_back_under_the_same_id_does_not_renew_a_lapsed_lease(
    call_app, api, user_token, dialer, dialer_token
):
    """A dialer restarted with the same dialer_id after its lease lapsed holds nothing: its
    poll neither renews the old lease nor lists the call, and another replica claims it (a
    renewed lapsed lease would have kept the call unclaimable and never settled)."""
    from tests.call_api.helpers import Dialer

    call = start(api, user_token)
    dialer.claim()
    assert dialer.poll(max_calls=0)["held"] == [call["token_call"]]
    set_columns(
        call_app, call["token_call"], lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    again = dialer.poll(max_calls=0)
    assert (again["calls"], again["held"], again["ended"]) == ([], [], [])
    other = Dialer(api, dialer_token, dialer_id="sim-2")
    [claimed] = other.claim()
    assert (claimed["token_call"], claimed["dialer_id"], claimed["claims"]) == (
        call["token_call"],
        "sim-2",
        2,
    )
    r = dialer.event_response(call["token_call"], "ringing")
    assert r.status_code == 409 and r.json["error"] == "lease_lost"
