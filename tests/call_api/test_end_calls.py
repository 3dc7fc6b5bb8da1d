"""``end_calls`` entries of the revocation feed: a user removed an app on the auth server's
account page and asked to hang up its live calls (call_api/revocations.py).

First the feed's bookkeeping (each entry carried out once per process, retried when it
fails, malformed ones skipped), then the calls it ends in the database (exactly that
subject's live calls of that client, ``end_reason: revoked``, events written, nothing the
second time), then the whole path with an in-process auth server: the account page's
"revoke, and hang up its calls" reaches the call API at its next poll.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from call_api.revocations import EndCalls, RevocationFeed, _end_calls_entries, subject_hash
from tests.call_api.helpers import Dialer, count_events, event_rows, start
from tests.call_api.test_revocations import FakeFeed, entry
from tests.conftest import ClientInfo, Flow, bearer, make_client, make_user

NOW = int(time.time())
LATER = NOW + 3600
ALICE = str(uuid.uuid4())
BOB = str(uuid.uuid4())


def end_calls_entry(id: int, sub: str, client_id: str, **extra: Any) -> dict[str, Any]:
    """As the auth server publishes it (auth_server/revocations.py ``describe``)."""
    return entry(
        id,
        "end_calls",
        subject_hash(sub),
        client_id=client_id,
        issued_before=extra.pop("issued_before", int(time.time()) + 1),
        **extra,
    )


class Recorder:
    """An end_calls handler that records what it is asked (and can fail on demand)."""

    def __init__(self) -> None:
        self.orders: list[EndCalls] = []
        self.fail = False

    def __call__(self, order: EndCalls) -> list[str]:
        if self.fail:
            raise RuntimeError("database away")
        self.orders.append(order)
        return []


def make_feed(fake: FakeFeed, handler: Any = None, **kwargs: Any) -> RevocationFeed:
    return RevocationFeed("http://auth.invalid/x", 2, 1, fetch=fake, end_calls=handler, **kwargs)


# --- the feed's bookkeeping ----------------------------------------------------------------


def test_each_entry_is_carried_out_once_despite_rereads():
    fake, handler = FakeFeed(), Recorder()
    fake.entries = [end_calls_entry(1, ALICE, "app-1", issued_before=NOW)]
    feed = make_feed(fake, handler)
    assert feed.poll() and feed.poll()
    assert fake.asked == [0, 0]  # the entry was read twice (the re-read window)
    assert handler.orders == [EndCalls(1, subject_hash(ALICE), "app-1", NOW, LATER)]
    fake.entries.append(end_calls_entry(2, BOB, "app-2", issued_before=NOW))
    assert feed.poll()
    assert [o.id for o in handler.orders] == [1, 2]


def test_an_end_calls_entry_revokes_no_token():
    """The app's tokens are stopped by the grant entries published with it, not by this."""
    fake = FakeFeed()
    fake.entries = [end_calls_entry(1, ALICE, "app-1")]
    feed = make_feed(fake, Recorder())
    assert feed.poll()
    assert len(feed.revoked) == 0
    assert not feed.revoked.covers({"sub": ALICE, "client_id": "app-1", "iat": NOW})


def test_a_failed_order_is_tried_again_at_the_next_poll():
    fake, handler = FakeFeed(), Recorder()
    fake.entries = [end_calls_entry(1, ALICE, "app-1"), end_calls_entry(2, BOB, "app-1")]
    feed = make_feed(fake, handler, reread_window=0)
    handler.fail = True
    assert feed.poll() is True  # the poll itself succeeded: tokens are still checked
    assert feed.status()["status"] == "ok"
    assert handler.orders == []
    handler.fail = False
    assert feed.poll()  # the entries are no longer read (cursor 2), but still pending
    assert fake.asked == [0, 2]
    assert [o.id for o in handler.orders] == [1, 2]
    assert feed.poll()
    assert [o.id for o in handler.orders] == [1, 2]


def test_an_unbound_feed_keeps_orders_until_it_has_an_app():
    fake, handler = FakeFeed(), Recorder()
    fake.entries = [end_calls_entry(1, ALICE, "app-1")]
    feed = make_feed(fake, reread_window=0)
    assert feed.poll()
    feed.end_calls_handler = handler
    assert feed.poll()
    assert [o.id for o in handler.orders] == [1]


@pytest.mark.parametrize(
    "bad",
    [
        {"client_id": None},
        {"client_id": 7},
        {"value": None},
        {"issued_before": None},
        {"issued_before": "soon"},
        {"expires_at": NOW - 10},  # already expired
        {"id": True},
    ],
)
def test_malformed_end_calls_entries_are_skipped(bad):
    fake, handler = FakeFeed(), Recorder()
    fake.entries = [{**end_calls_entry(1, ALICE, "app-1"), **bad}, end_calls_entry(2, BOB, "b")]
    feed = make_feed(fake, handler)
    assert feed.poll()
    assert [o.id for o in handler.orders] == [2]


def test_a_reset_feed_carries_out_its_entries_again():
    """A new auth database numbers its entries from 1 again: a new entry 1 is a new order."""
    fake, handler = FakeFeed(), Recorder()
    fake.entries = [entry(i, "jti", f"j{i}") for i in range(1, 4)]
    fake.entries.append(end_calls_entry(4, ALICE, "app-1"))
    feed = make_feed(fake, handler, reread_window=0)
    assert feed.poll()
    fake.entries = [end_calls_entry(1, BOB, "app-1")]
    assert feed.poll()
    assert [(o.id, o.subject_hash) for o in handler.orders] == [
        (4, subject_hash(ALICE)),
        (1, subject_hash(BOB)),
    ]


# --- the calls it ends ---------------------------------------------------------------------


@pytest.fixture
def roomy(make_call_app: Callable[..., Flask]) -> Flask:
    """A call API on the test database where a user may hold several live calls."""
    return make_call_app(CALL_MAX_ONGOING_DEFAULT=10)


def status(app: Flask, token_call: str) -> tuple[str, str, str | None]:
    from sqlalchemy import select

    from call_api.models import Call

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        call = db.session.scalar(select(Call).where(Call.token_call == token_call))
        db.session.remove()
        return call.status, call.state, call.end_reason


def bound_feed(app: Flask, fake: FakeFeed) -> RevocationFeed:
    feed = RevocationFeed("http://auth.invalid/x", 2, 1, fetch=fake)
    feed.bind(app)
    return feed


def test_an_entry_ends_exactly_that_subjects_live_calls_of_that_client(roomy, forge, dialer_token):
    api = roomy.test_client()
    alice_1 = forge(sub=ALICE, client_id="app-1")
    queued = start(api, alice_1)["token_call"]
    answered = start(api, alice_1)["token_call"]
    dialer = Dialer(api, dialer_token)
    for call in dialer.claim(2):
        if call["token_call"] == answered:
            dialer.event(answered, "answered")
    ended_before = start(api, alice_1)["token_call"]
    assert (
        api.put(
            "/rest/call", data={"token_call": ended_before}, headers=bearer(alice_1)
        ).status_code
        == 200
    )
    other_app = start(api, forge(sub=ALICE, client_id="app-2"))["token_call"]
    other_user = start(api, forge(sub=BOB, client_id="app-1"))["token_call"]
    events = count_events(roomy)

    fake = FakeFeed()
    fake.entries = [end_calls_entry(1, ALICE, "app-1")]
    feed = bound_feed(roomy, fake)
    assert feed.poll()

    assert status(roomy, queued) == ("ended", "canceled", "revoked")
    assert status(roomy, answered) == ("ended", "completed", "revoked")
    assert status(roomy, ended_before) == ("ended", "canceled", "hangup")
    assert status(roomy, other_app) == ("ongoing", "queued", None)
    assert status(roomy, other_user) == ("ongoing", "queued", None)
    assert count_events(roomy) == events + 2
    for token_call, state in ((queued, "canceled"), (answered, "completed")):
        last = event_rows(roomy, token_call)[-1]
        assert (last["type"], last["source"], last["client_id"]) == (
            f"call.{state}",
            "system",
            "app-1",
        )
        assert last["payload"]["data"]["end_reason"] == "revoked"
    # The app sees it like any hang-up.
    r = api.get(f"/rest/call?token_call={queued}", headers=bearer(alice_1))
    assert (r.json["status"], r.json["end_reason"]) == ("ended", "revoked")

    # The same entry read again, and the same order again (another entry): nothing changes.
    fake.entries.append(end_calls_entry(2, ALICE, "app-1"))
    assert feed.poll()
    assert count_events(roomy) == events + 2
    assert status(roomy, other_app) == ("ongoing", "queued", None)


def test_calls_started_after_the_entry_are_not_ended(roomy, forge):
    """A call the app started after the revocation (it was allowed again) goes on."""
    api = roomy.test_client()
    token_call = start(api, forge(sub=ALICE, client_id="app-1"))["token_call"]
    fake = FakeFeed()
    fake.entries = [end_calls_entry(1, ALICE, "app-1", issued_before=int(time.time()) - 60)]
    assert bound_feed(roomy, fake).poll()
    assert status(roomy, token_call) == ("ongoing", "queued", None)


def test_a_second_worker_finds_nothing_left_to_end(roomy, make_call_app, forge):
    """Every worker process polls the feed: the second one to act ends nothing again."""
    api = roomy.test_client()
    token_call = start(api, forge(sub=ALICE, client_id="app-1"))["token_call"]
    fake = FakeFeed()
    fake.entries = [end_calls_entry(1, ALICE, "app-1")]
    assert bound_feed(roomy, fake).poll()
    events = count_events(roomy)
    other_worker = make_call_app(CALL_MAX_ONGOING_DEFAULT=10)
    assert bound_feed(other_worker, fake).poll()
    assert count_events(roomy) == events
    assert status(roomy, token_call) == ("ended", "canceled", "revoked")


# --- from the account page to the call API ----------------------------------------------------


@pytest.fixture
def fed_api(make_call_app, client) -> Iterator[tuple[Flask, RevocationFeed]]:
    """A call API whose feed reads the in-process auth server (``client``); polled by the
    test (the thread polls once at the first request, then waits an hour)."""

    def fetch(after: int) -> dict:
        r = client.get(f"/oauth/revocations?after={after}")
        assert r.status_code == 200
        return dict(r.json)

    app = make_call_app(CALL_REVOCATION_POLL_INTERVAL=3600, CALL_MAX_ONGOING_DEFAULT=10)
    feed = RevocationFeed("http://in-process", 3600, 5, fetch=fetch)
    app.extensions["clickcall_revocations"] = feed
    yield app, feed
    feed.stop()


def revoke(browser: FlaskClient, app_client: ClientInfo, **data: str) -> None:
    with browser.session_transaction() as sess:
        csrf = sess["csrf"]
    r = browser.post(
        "/account/apps/revoke",
        data={"client_id": app_client.client_id, "csrf_token": csrf, **data},
    )
    assert (r.status_code, r.headers["Location"]) == (303, "/account")


def test_the_feed_document_is_what_the_call_api_reads(auth_app, client, flow, user, web_client):
    """The auth server's ``end_calls`` entry, parsed as the call API parses it."""
    flow.token(user, web_client)
    revoke(flow.client, web_client, end_calls="yes")
    body = client.get("/oauth/revocations?after=0").json
    [published] = [e for e in body["revocations"] if e["kind"] == "end_calls"]
    assert _end_calls_entries(body["revocations"], time.time()) == [
        EndCalls(
            id=published["id"],
            subject_hash=subject_hash(user.id),
            client_id=web_client.client_id,
            started_before=published["issued_before"],
            expires_at=published["expires_at"],
        )
    ]


def test_revoking_an_app_with_its_calls_ends_them_at_the_next_poll(
    auth_app, fed_api, flow, user, web_client
):
    app, feed = fed_api
    api = app.test_client()
    other_client = make_client(auth_app, "Other app")
    token = flow.token(user, web_client)["access_token"]
    other_token = flow.token(user, other_client)["access_token"]
    bob = make_user(auth_app, "bob", "bob-password")
    bob_token = Flow(auth_app.test_client()).token(bob, web_client)["access_token"]
    mine = start(api, token)["token_call"]  # the first request binds the feed to the app
    other = start(api, other_token)["token_call"]
    bobs = start(api, bob_token)["token_call"]

    revoke(flow.client, web_client, end_calls="yes")
    assert feed.poll()

    assert status(app, mine) == ("ended", "canceled", "revoked")
    assert status(app, other) == ("ongoing", "queued", None)
    assert status(app, bobs) == ("ongoing", "queued", None)
    # And the revoked app's token is refused now.
    r = api.get("/rest/call", headers=bearer(token))
    assert (r.status_code, r.json["error_description"]) == (
        401,
        "The access token has been revoked.",
    )
    assert api.get("/rest/call", headers=bearer(other_token)).status_code == 200


def test_revoking_an_app_without_ticking_leaves_its_calls(
    auth_app, fed_api, flow, user, web_client
):
    app, feed = fed_api
    api = app.test_client()
    token = flow.token(user, web_client)["access_token"]
    mine = start(api, token)["token_call"]
    revoke(flow.client, web_client)
    assert feed.poll()
    assert status(app, mine) == ("ongoing", "queued", None)
    assert api.get("/rest/call", headers=bearer(token)).status_code == 401
