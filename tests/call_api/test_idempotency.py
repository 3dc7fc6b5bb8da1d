"""``Idempotency-Key`` on POST /rest/call: retries return the first call, never a second one."""

from __future__ import annotations

import pytest

from tests.call_api.helpers import NUMBER, OTHER_NUMBER, assert_ongoing, count_calls, start
from tests.conftest import bearer, make_client, make_user

BAD_KEY = {
    "error": "invalid_request",
    "error_description": "The Idempotency-Key must be 1–255 visible ASCII characters.",
}
REUSED = {
    "error": "idempotency_key_reused",
    "error_description": "This Idempotency-Key was already used with a different request body.",
}


def post(api, token: str, key: str | None, number: str = NUMBER, **kwargs):
    headers = bearer(token)
    if key is not None:
        headers["Idempotency-Key"] = key
    if "json" not in kwargs:
        kwargs["data"] = {"number": number}
    return api.post("/rest/call", headers=headers, **kwargs)


def test_same_key_same_body_replays_the_call(api, call_app, user_token, user, web_client):
    """The retry is a 201 with the identical body and Location, marked Idempotent-Replayed,
    and only one call exists."""
    first = post(api, user_token, "order-42")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert_ongoing(first.json, NUMBER, web_client.client_id, user.id)

    again = post(api, user_token, "order-42")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"]

    # The same number written differently is the same request once normalised.
    third = post(api, user_token, "order-42", json={"number": "+1 (415) 555-0123"})
    assert (third.status_code, third.json) == (201, first.json)
    assert third.headers["Idempotent-Replayed"] == "true"

    assert count_calls(call_app) == 1
    assert api.get("/rest/call", headers=bearer(user_token)).json == {"calls": [first.json]}


def test_other_keys_or_no_key_make_new_calls(api, call_app, user_token):
    """Different keys (and requests without a key) are different calls."""
    a = post(api, user_token, "key-a")
    b = post(api, user_token, "key-b")
    assert a.status_code == b.status_code == 201
    assert a.json["token_call"] != b.json["token_call"]
    assert count_calls(call_app) == 2


def test_same_key_other_number_is_422(api, call_app, user_token):
    """Reusing a key with another number is a 422 idempotency_key_reused; nothing is added and
    the original call is untouched."""
    first = post(api, user_token, "k1")
    r = post(api, user_token, "k1", OTHER_NUMBER)
    assert (r.status_code, r.json) == (422, REUSED)
    assert "Idempotent-Replayed" not in r.headers
    assert count_calls(call_app) == 1
    r = api.get(f"/rest/call?token_call={first.json['token_call']}", headers=bearer(user_token))
    assert r.json == first.json


@pytest.mark.parametrize(
    "key",
    ["", "a" * 256, "has space", " leading", "tab\there", "caf\u00e9"],
    ids=["empty", "too-long", "space", "leading-space", "tab", "non-ascii"],
)
def test_invalid_key_is_400(api, call_app, user_token, key):
    """An empty, over-long, or non-visible-ASCII key is a 400 and starts no call."""
    headers = {**bearer(user_token), "Idempotency-Key": key}
    r = api.post("/rest/call", data={"number": NUMBER}, headers=headers)
    assert (r.status_code, r.json) == (400, BAD_KEY)
    assert count_calls(call_app) == 0


def test_longest_and_punctuated_keys_are_accepted(api, user_token):
    """255 visible ASCII characters, punctuation included, is a valid key."""
    for key in ("k" * 255, "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"):
        r = post(api, user_token, key)
        assert r.status_code == 201, (key, r.get_data(as_text=True))
        again = post(api, user_token, key)
        assert (again.status_code, again.json) == (201, r.json)
        assert (
            api.put(
                "/rest/call", data={"token_call": r.json["token_call"]}, headers=bearer(user_token)
            ).status_code
            == 200
        )


def test_replay_works_at_the_limit(api, user_token):
    """A retry of an accepted call gets that call back even though the user is now at the
    limit; a new key at the limit is still refused."""
    first = post(api, user_token, "retry-me")
    start(api, user_token, OTHER_NUMBER)
    again = post(api, user_token, "retry-me")
    assert (again.status_code, again.json) == (201, first.json)
    assert again.headers["Idempotent-Replayed"] == "true"
    r = post(api, user_token, "fresh-key")
    assert r.status_code == 409
    assert r.json["error"] == "max_calls_exceeded"


def test_keys_are_scoped_to_user_and_app(api, auth_app, mint, user, web_client, user_token):
    """Another user, or another app of the same user, sending the same key gets its own new
    call: a key never reveals or replays someone else's call."""
    mine = post(api, user_token, "shared-key")
    bob = make_user(auth_app, "bob", "bob-password")
    bobs = post(api, mint(bob, web_client), "shared-key")
    assert bobs.status_code == 201
    assert "Idempotent-Replayed" not in bobs.headers
    assert bobs.json["token_call"] != mine.json["token_call"]
    assert bobs.json["subject"] == bob.id

    mobile = make_client(auth_app, "Mobile app")
    other_app = post(api, mint(user, mobile), "shared-key")
    assert other_app.status_code == 201
    assert "Idempotent-Replayed" not in other_app.headers
    assert other_app.json["token_call"] != mine.json["token_call"]
    assert other_app.json["client_id"] == mobile.client_id
