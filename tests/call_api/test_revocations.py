"""The call API's copy of the revocation feed (call_api/revocations.py), in-process.

Unit tests of the cache (what a snapshot covers, cursor and re-read window, pages, reset,
expiry, failures), then the call API itself with its feed read from an in-process auth
server. With real processes: tests/security/test_revocation_reaches_call_api.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from call_api.revocations import RevocationFeed, Revoked, subject_hash
from tests.call_api.helpers import NUMBER
from tests.conftest import bearer

NOW = int(time.time())
LATER = NOW + 3600
REVOKED = {"error": "invalid_token", "error_description": "The access token has been revoked."}
CHALLENGE = (
    'Bearer realm="clickcall", error="invalid_token", '
    'error_description="The access token has been revoked."'
)


def entry(id: int, kind: str, value: str, expires_at: float = LATER, **extra: Any) -> dict:
    return {"id": id, "kind": kind, "value": value, "expires_at": expires_at, **extra}


class FakeFeed:
    """Answers like GET /oauth/revocations from a list of committed entries."""

    def __init__(self, page: int = 500) -> None:
        self.entries: list[dict] = []
        self.page = page
        self.asked: list[int] = []
        self.down = False

    def __call__(self, after: int) -> dict:
        self.asked.append(after)
        if self.down:
            from call_api.revocations import FeedError

            raise FeedError("ConnectionError")
        top = max((e["id"] for e in self.entries), default=0)
        newer = sorted((e for e in self.entries if e["id"] > after), key=lambda e: e["id"])
        rows = newer[: self.page]
        more = len(rows) == self.page
        return {"revocations": rows, "cursor": rows[-1]["id"] if more else top, "more": more}


def make_feed(fake: FakeFeed, **kwargs: Any) -> RevocationFeed:
    return RevocationFeed("http://auth.invalid/oauth/revocations", 2, 1, fetch=fake, **kwargs)


CLAIMS = {
    "sub": "3f1c1f52-5d49-4b8e-9a43-5a6a0b7e3a10",
    "client_id": "app-1",
    "jti": "jti-1",
    "grant_id": "grant-1",
    "iat": NOW,
}


# --- what a snapshot covers --------------------------------------------------------------


@pytest.mark.parametrize(
    "revoked, claims, covered",
    [
        (Revoked(), CLAIMS, False),
        (Revoked(jtis={"jti-1": LATER}), CLAIMS, True),
        (Revoked(jtis={"jti-2": LATER}), CLAIMS, False),
        (Revoked(grants={"grant-1": LATER}), CLAIMS, True),
        (Revoked(grants={"grant-1": LATER}), {**CLAIMS, "grant_id": "grant-2"}, False),
        (
            Revoked(grants={"grant-1": LATER}),
            {k: v for k, v in CLAIMS.items() if k != "grant_id"},
            False,
        ),
        # sub and client: only tokens issued before issued_before
        (Revoked(subjects={subject_hash(CLAIMS["sub"]): (NOW + 1, LATER)}), CLAIMS, True),
        (Revoked(subjects={subject_hash(CLAIMS["sub"]): (NOW, LATER)}), CLAIMS, False),
        (Revoked(subjects={subject_hash("someone else"): (NOW + 1, LATER)}), CLAIMS, False),
        (Revoked(clients={"app-1": (NOW + 1, LATER)}), CLAIMS, True),
        (Revoked(clients={"app-1": (NOW, LATER)}), CLAIMS, False),
        (Revoked(clients={"app-2": (NOW + 1, LATER)}), CLAIMS, False),
        # claims of unexpected types never raise; an unusable iat counts as the oldest
        (Revoked(jtis={"jti-1": LATER}), {**CLAIMS, "jti": ["jti-1"]}, False),
        (Revoked(grants={"grant-1": LATER}), {**CLAIMS, "grant_id": {"a": 1}}, False),
        (Revoked(clients={"app-1": (NOW + 1, LATER)}), {**CLAIMS, "iat": "x"}, True),
        (Revoked(clients={"app-1": (NOW + 1, LATER)}), {**CLAIMS, "iat": True}, True),
    ],
)
def test_what_a_snapshot_covers(revoked, claims, covered):
    assert revoked.covers(claims) is covered


def test_subject_hash_is_sha256_hex():
    assert subject_hash("abc") == hashlib.sha256(b"abc").hexdigest()
    assert subject_hash("\udc80")  # a lone surrogate does not raise


# --- polling -----------------------------------------------------------------------------


def test_poll_reads_the_feed_and_covers_its_tokens():
    fake = FakeFeed()
    fake.entries = [
        entry(1, "jti", "jti-1"),
        entry(2, "grant", "grant-9"),
        entry(3, "sub", subject_hash("u-1"), issued_before=NOW + 1),
        entry(4, "client", "app-9", issued_before=NOW + 1),
    ]
    feed = make_feed(fake)
    assert feed.poll() is True
    assert fake.asked == [0]
    assert feed.cursor == 4
    assert len(feed.revoked) == 4
    assert feed.revoked.covers({"jti": "jti-1"})
    assert feed.revoked.covers({"grant_id": "grant-9"})
    assert feed.revoked.covers({"sub": "u-1", "iat": NOW})
    assert feed.revoked.covers({"client_id": "app-9", "iat": NOW})
    assert not feed.revoked.covers({"sub": "u-1", "iat": NOW + 1})


def test_recent_entries_are_read_again_for_the_reread_window():
    """An entry that commits after a newer one was seen (id 2 after id 3) is not missed:
    polls within the window ask from the cursor of before it; after it, from the cursor."""
    fake = FakeFeed()
    fake.entries = [entry(1, "jti", "a"), entry(3, "jti", "c")]  # 2: transaction still open
    feed = make_feed(fake, reread_window=0.3)
    feed.poll()
    assert feed.cursor == 3
    fake.entries.append(entry(2, "jti", "b"))  # ... now committed
    feed.poll()
    assert feed.revoked.covers({"jti": "b"})
    time.sleep(0.35)
    feed.poll()  # the polls that saw cursor 3 are now older than the window
    assert fake.asked == [0, 0, 3]


def test_pages_are_followed_until_the_end():
    fake = FakeFeed(page=2)
    fake.entries = [entry(i, "jti", f"j{i}") for i in range(1, 6)]
    feed = make_feed(fake, reread_window=0)
    feed.poll()
    assert fake.asked == [0, 2, 4]
    assert feed.cursor == 5
    assert sorted(feed.revoked.jtis) == ["j1", "j2", "j3", "j4", "j5"]


def test_a_cursor_that_went_back_means_a_new_feed():
    """A new auth database: what was known is dropped and the feed read again from 0."""
    fake = FakeFeed()
    fake.entries = [entry(i, "jti", f"old{i}") for i in range(1, 8)]
    feed = make_feed(fake, reread_window=0)
    feed.poll()
    feed.poll()
    fake.entries = [entry(1, "jti", "new1")]
    fake.asked.clear()
    feed.poll()
    assert fake.asked == [7, 0]
    assert feed.cursor == 1
    assert set(feed.revoked.jtis) == {"new1"}


def test_entries_are_dropped_once_their_tokens_expired():
    """Kept until expires_at plus the leeway the call API allows on exp; an entry that
    arrives already expired is not kept at all."""
    fake = FakeFeed()
    fake.entries = [
        entry(1, "jti", "gone", expires_at=NOW - 100),
        entry(2, "jti", "in-leeway", expires_at=time.time() + 0.3 - 30),
        entry(3, "grant", "kept"),
        entry(4, "sub", "s", expires_at=time.time() + 0.3 - 30, issued_before=NOW),
    ]
    feed = make_feed(fake, leeway=30)
    feed.poll()
    assert set(feed.revoked.jtis) == {"in-leeway"}
    assert set(feed.revoked.subjects) == {"s"}
    time.sleep(0.35)
    feed.poll()
    assert (feed.revoked.jtis, set(feed.revoked.grants), feed.revoked.subjects) == (
        {},
        {"kept"},
        {},
    )


def test_later_entries_extend_earlier_ones():
    fake = FakeFeed()
    fake.entries = [
        # (expiries far enough ahead that a slow run never sees them pass: NOW is import time)
        entry(1, "client", "app", expires_at=NOW + 1000, issued_before=NOW - 50),
        entry(2, "client", "app", expires_at=NOW + 2000, issued_before=NOW - 10),
        entry(3, "jti", "j", expires_at=NOW + 1000),
        entry(4, "jti", "j", expires_at=NOW + 500),
    ]
    feed = make_feed(fake)
    feed.poll()
    assert feed.revoked.clients == {"app": (NOW - 10, NOW + 2000)}
    assert feed.revoked.jtis == {"j": NOW + 1000}


def test_an_unchanged_poll_keeps_the_same_snapshot():
    fake = FakeFeed()
    fake.entries = [entry(1, "jti", "j")]
    feed = make_feed(fake)
    feed.poll()
    snapshot = feed.revoked
    feed.poll()  # reads entry 1 again (re-read window): nothing new
    assert feed.revoked is snapshot


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"revocations": {}, "cursor": 1},
        {"revocations": [], "cursor": "1"},
        {"revocations": [], "cursor": True},
        {"cursor": 1},
    ],
)
def test_an_answer_that_is_not_a_feed_is_a_failed_poll(body):
    feed = make_feed(lambda after: body)  # type: ignore[arg-type,return-value]
    assert feed.poll() is False
    assert feed.last_error == "not a revocation feed" or feed.last_error


def test_malformed_and_unknown_entries_are_skipped():
    fake = FakeFeed()
    fake.entries = [
        entry(1, "jti", 5),  # value not a string
        entry(2, "jti", "no-expiry", expires_at=None),
        entry(3, "sub", "no-bound"),  # sub without issued_before
        entry(4, "future-kind", "x"),
        entry(5, "jti", "good"),
    ]
    feed = make_feed(fake)
    assert feed.poll() is True
    assert (set(feed.revoked.jtis), len(feed.revoked)) == ({"good"}, 1)


def test_an_unreachable_feed_keeps_what_was_known_and_says_so():
    fake = FakeFeed()
    fake.entries = [entry(1, "jti", "j")]
    feed = make_feed(fake)
    assert feed.status()["status"] == "starting"
    feed.poll()
    status = feed.status()
    assert status["status"] == "ok" and status["cursor"] == 1 and status["entries"] == 1
    fake.down = True
    assert feed.poll() is False
    assert feed.revoked.covers({"jti": "j"})
    status = feed.status()
    assert status["status"] == "stale"
    assert status["last_error"] == "ConnectionError"
    assert status["seconds_since_update"] >= 0
    fake.down = False
    assert feed.poll() is True
    assert "last_error" not in feed.status()


def test_interval_0_turns_the_feed_off():
    fake = FakeFeed()
    feed = RevocationFeed("http://auth.invalid/x", 0, 1, fetch=fake)
    assert not feed.enabled
    assert feed.is_revoked({"jti": "j"}) is False
    assert fake.asked == []
    assert feed.status() == {"status": "disabled"}


# --- the call API with its feed read from an in-process auth server ---------------------


@pytest.fixture
def fed_api(make_call_app, client) -> Iterator[tuple[Any, RevocationFeed]]:
    """A call API whose feed reads the in-process auth server (``client``); polled by the
    test (the thread polls once at the first request, then waits an hour)."""

    def fetch(after: int) -> dict:
        r = client.get(f"/oauth/revocations?after={after}")
        assert r.status_code == 200
        return dict(r.json)

    app = make_call_app(CALL_REVOCATION_POLL_INTERVAL=3600)
    feed = RevocationFeed("http://in-process", 3600, 5, fetch=fetch)
    app.extensions["clickcall_revocations"] = feed
    yield app.test_client(), feed
    feed.stop()


def assert_revoked(r) -> None:
    assert r.status_code == 401, r.get_data(as_text=True)
    assert r.json == REVOKED
    assert r.headers["WWW-Authenticate"] == CHALLENGE


def test_a_revoked_access_token_is_refused_after_the_next_poll(
    fed_api, client, flow, user, web_client
):
    api, feed = fed_api
    token = flow.token(user, web_client)["access_token"]
    other = flow.token(user, web_client)["access_token"]
    assert api.get("/rest/call", headers=bearer(token)).status_code == 200
    r = client.post("/oauth/revoke", data={"token": token}, headers=web_client.basic())
    assert r.status_code == 200
    assert feed.poll()
    assert_revoked(api.get("/rest/call", headers=bearer(token)))
    assert_revoked(api.post("/rest/call", data={"number": NUMBER}, headers=bearer(token)))
    assert api.get("/rest/call", headers=bearer(other)).status_code == 200


def test_a_disabled_users_tokens_are_refused(auth_app, fed_api, flow, user, web_client):
    from auth_server.accounts import disable_user

    api, feed = fed_api
    token = flow.token(user, web_client)["access_token"]
    assert api.get("/rest/call", headers=bearer(token)).status_code == 200
    with auth_app.app_context():
        disable_user(user.username)
    assert feed.poll()
    assert_revoked(api.get("/rest/call", headers=bearer(token)))


def test_readyz_reports_the_feed(make_call_app):
    app = make_call_app(
        CALL_REVOCATION_POLL_INTERVAL=3600,
        CALL_REVOCATION_URL="http://127.0.0.1:9/oauth/revocations",
        CALL_REVOCATION_TIMEOUT=1,
    )
    try:
        r = app.test_client().get("/readyz")
        assert r.status_code == 200  # stale is reported, never a reason to refuse traffic
        assert r.json["revocations"] == {
            "status": "stale",
            "seconds_since_update": None,
            "cursor": 0,
            "entries": 0,
            "last_error": "ConnectionError",
        }
    finally:
        app.extensions["clickcall_revocations"].stop()
