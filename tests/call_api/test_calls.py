"""POST/GET/PUT /rest/call: creating, reading, listing and ending calls over HTTP."""

from __future__ import annotations

import pytest

from tests.call_api.helpers import (
    NOT_FOUND,
    NUMBER,
    OTHER_NUMBER,
    TOKEN_CALL_RE,
    assert_ended,
    assert_ongoing,
    count_calls,
    start,
)
from tests.conftest import bearer, make_client, make_user


def invalid_number(description: str) -> dict[str, str]:
    return {"error": "invalid_number", "error_description": description}


NO_COUNTRY = (
    "The number cannot be called: it has no valid country code; write it in international "
    "form, e.g. +14155550123."
)


@pytest.mark.parametrize(
    "raw, e164",
    [
        ("+1 (415) 555-0123", "+14155550123"),
        ("+1-415-555-0123", "+14155550123"),
        ("  +14155550123  ", "+14155550123"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+49 30 123456", "+4930123456"),
        ("+33 1 42 68 53 00", "+33142685300"),
    ],
)
def test_post_form_normalises_number_to_e164(api, user_token, user, web_client, raw, e164):
    """A form POST answers 201 with Location and exactly the call fields, number in E.164."""
    r = api.post("/rest/call", data={"number": raw}, headers=bearer(user_token))
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    assert_ongoing(r.json, e164, web_client.client_id, user.id)
    assert r.headers["Location"] == f"/rest/call?token_call={r.json['token_call']}"


def test_post_json_body(api, user_token, user, web_client):
    """A JSON object body works like the form and the stored call reads back identically."""
    r = api.post("/rest/call", json={"number": "+1 (415) 555-0123"}, headers=bearer(user_token))
    assert r.status_code == 201, r.get_data(as_text=True)
    assert_ongoing(r.json, "+14155550123", web_client.client_id, user.id)
    location = r.headers["Location"]
    assert location == f"/rest/call?token_call={r.json['token_call']}"
    again = api.get(location, headers=bearer(user_token))
    assert again.status_code == 200
    assert again.json == r.json


def test_national_prefix_number_needs_a_region(api, user_token, make_call_app, user, web_client):
    """'0049…' is refused without a default region, and read as +49… with CALL_DEFAULT_REGION=DE."""
    r = api.post("/rest/call", data={"number": "004930123456"}, headers=bearer(user_token))
    assert r.status_code == 400
    assert r.json == invalid_number(NO_COUNTRY)

    german = make_call_app(CALL_DEFAULT_REGION="DE").test_client()
    r = german.post("/rest/call", data={"number": "004930123456"}, headers=bearer(user_token))
    assert r.status_code == 201, r.get_data(as_text=True)
    assert_ongoing(r.json, "+4930123456", web_client.client_id, user.id)
    r = german.post("/rest/call", data={"number": "030 123456"}, headers=bearer(user_token))
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.json["number"] == "+4930123456"


BAD_NUMBERS = [
    ("", "The 'number' parameter is required."),
    ("   ", "The 'number' parameter is required."),
    ("abc", "The number cannot be called: it is not a phone number."),
    ("call me maybe", "The number cannot be called: it is not a phone number."),
    ("+1415", "The number cannot be called: it has the wrong length for its country."),
    ("4155550123", NO_COUNTRY),
    ("+999 123456", NO_COUNTRY),
    ("+1415555012345678901", "The number cannot be called: it is too long."),
    ("+1" + "2" * 70, "The number is longer than 64 characters."),
    ("+1 415 555\x000123", "The number contains control characters."),
    ("+1 415 555\n0123", "The number contains control characters."),
    ("+1 415 555\x7f0123", "The number contains control characters."),
    ("+1 200 555 0123", "The number cannot be called: it is not a valid number in its country."),
    (
        "+1 415 555 0123 ext. 5",
        "The number has an extension, which a call session cannot dial; send the main number only.",
    ),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_bad_numbers_are_400_with_a_reason(api, call_app, user_token, user, as_json):
    """Every unusable number is a 400 invalid_number naming the reason, and nothing is stored."""
    for raw, description in BAD_NUMBERS:
        kwargs = {"json": {"number": raw}} if as_json else {"data": {"number": raw}}
        r = api.post("/rest/call", headers=bearer(user_token), **kwargs)
        assert (r.status_code, r.json) == (400, invalid_number(description)), repr(raw)
    assert count_calls(call_app) == 0


def test_missing_or_non_string_number(api, call_app, user_token):
    """No number at all, or a JSON non-string, is a 400 invalid_number."""
    r = api.post("/rest/call", data={}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (400, invalid_number("The 'number' parameter is required."))
    r = api.post("/rest/call", data={"phone": NUMBER}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (400, invalid_number("The 'number' parameter is required."))
    r = api.post("/rest/call", json={}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (400, invalid_number("The 'number' parameter is required."))
    r = api.post("/rest/call", json={"number": None}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (400, invalid_number("The 'number' parameter is required."))
    for value in (14155550123, ["+14155550123"], {"n": 1}, True):
        r = api.post("/rest/call", json={"number": value}, headers=bearer(user_token))
        assert (r.status_code, r.json) == (
            400,
            invalid_number("The 'number' must be a string such as '+14155550123'."),
        ), value
    assert count_calls(call_app) == 0


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"+14155550123"', b"null", b"42", b"{", b""])
def test_json_body_must_be_an_object(api, call_app, user_token, payload):
    """A JSON body that is not an object (or not JSON at all) is a 400 invalid_request."""
    r = api.post(
        "/rest/call", data=payload, content_type="application/json", headers=bearer(user_token)
    )
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_request",
        "error_description": "The body must be a JSON object.",
    }
    assert count_calls(call_app) == 0


def test_text_plain_body_is_415(api, call_app, user_token):
    """A body in a media type other than form or JSON is a 415, for POST and PUT."""
    expected = {
        "error": "unsupported_media_type",
        "error_description": "Send application/x-www-form-urlencoded or application/json.",
    }
    r = api.post(
        "/rest/call",
        data="number=+14155550123",
        content_type="text/plain",
        headers=bearer(user_token),
    )
    assert (r.status_code, r.json) == (415, expected)
    call = start(api, user_token)
    r = api.put(
        "/rest/call",
        data=f"token_call={call['token_call']}",
        content_type="text/plain",
        headers=bearer(user_token),
    )
    assert (r.status_code, r.json) == (415, expected)
    assert (
        api.get(f"/rest/call?token_call={call['token_call']}", headers=bearer(user_token)).json
        == call
    )
    assert count_calls(call_app) == 1


def test_get_one_call(api, user_token):
    """GET ?token_call= returns exactly the call as POST returned it."""
    call = start(api, user_token)
    r = api.get(
        "/rest/call", query_string={"token_call": call["token_call"]}, headers=bearer(user_token)
    )
    assert r.status_code == 200
    assert r.json == call


def test_list_only_ongoing_only_mine_across_apps(api, auth_app, mint, user, web_client, user_token):
    """GET /rest/call lists the caller's ongoing calls from every app, oldest first, and no
    ended call nor anyone else's."""
    mobile = make_client(auth_app, "Mobile app")
    mobile_token = mint(user, mobile)
    bob = make_user(auth_app, "bob", "bob-password")
    bob_token = mint(bob, web_client)

    first = start(api, user_token, NUMBER)
    ended = start(api, mobile_token, OTHER_NUMBER)
    assert (
        api.put(
            "/rest/call", data={"token_call": ended["token_call"]}, headers=bearer(mobile_token)
        ).status_code
        == 200
    )
    second = start(api, mobile_token, "+33142685300")
    bobs = start(api, bob_token, NUMBER)

    assert first["client_id"] == web_client.client_id
    assert second["client_id"] == mobile.client_id
    for token in (user_token, mobile_token):
        r = api.get("/rest/call", headers=bearer(token))
        assert r.status_code == 200
        assert r.json == {"calls": [first, second]}
    r = api.get("/rest/call", headers=bearer(bob_token))
    assert r.json == {"calls": [bobs]}


def test_list_is_empty_for_a_new_user(api, user_token):
    """A caller without calls gets an empty list, not an error."""
    r = api.get("/rest/call", headers=bearer(user_token))
    assert (r.status_code, r.json) == (200, {"calls": []})


@pytest.mark.parametrize("how", ["form", "json", "query"])
def test_put_ends_the_call_and_is_idempotent(api, user_token, how):
    """PUT ends a call (hangup, ended_at, integer duration); a second PUT and a GET return
    the identical final record; the call leaves the ongoing list."""
    call = start(api, user_token)
    token_call = call["token_call"]
    if how == "form":
        kwargs = {"data": {"token_call": token_call}}
    elif how == "json":
        kwargs = {"json": {"token_call": token_call}}
    else:
        kwargs = {"query_string": {"token_call": token_call}}
    r = api.put("/rest/call", headers=bearer(user_token), **kwargs)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert_ended(r.json, call, "hangup")
    final = r.json

    r = api.put("/rest/call", headers=bearer(user_token), **kwargs)
    assert (r.status_code, r.json) == (200, final)
    r = api.get(f"/rest/call?token_call={token_call}", headers=bearer(user_token))
    assert (r.status_code, r.json) == (200, final)
    assert api.get("/rest/call", headers=bearer(user_token)).json == {"calls": []}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"data": {}},
        {"data": {"token_call": ""}},
        {"json": {}},
        {"json": {"token_call": None}},
        {"query_string": {"token_call": ""}},
    ],
    ids=["nobody", "empty-form", "blank-form", "empty-json", "null-json", "blank-query"],
)
def test_put_without_token_call_is_400(api, user_token, kwargs):
    """PUT without a token_call is a 400 invalid_request naming the parameter."""
    r = api.put("/rest/call", headers=bearer(user_token), **kwargs)
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_request",
        "error_description": "The 'token_call' parameter is required.",
    }


def test_put_non_string_token_call_is_400(api, user_token):
    """A JSON token_call that is not a string is a 400, not a lookup."""
    r = api.put("/rest/call", json={"token_call": 12345}, headers=bearer(user_token))
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_request",
        "error_description": "The 'token_call' parameter must be a string.",
    }


def test_unknown_and_foreign_calls_are_identical_404s(api, auth_app, mint, web_client, user_token):
    """Someone else's call is exactly as invisible as a missing one (GET and PUT), and a
    refused PUT leaves the owner's call ongoing."""
    bob = make_user(auth_app, "bob", "bob-password")
    bob_token = mint(bob, web_client)
    mine = start(api, user_token)

    answers = []
    for token_call in ("x" * 32, mine["token_call"], "", "y" * 200):
        answers.append(
            api.get(
                "/rest/call", query_string={"token_call": token_call}, headers=bearer(bob_token)
            )
        )
        answers.append(
            api.put(
                "/rest/call",
                data={"token_call": token_call} if token_call else {},
                headers=bearer(bob_token),
            )
        )
    unknown_get, unknown_put, foreign_get, foreign_put, empty_get, _, long_get, long_put = answers
    for r in (unknown_get, unknown_put, foreign_get, foreign_put, empty_get, long_get, long_put):
        assert (r.status_code, r.json) == (404, NOT_FOUND)
    assert foreign_get.get_data() == unknown_get.get_data()
    assert foreign_put.get_data() == unknown_put.get_data()
    generated = {"X-Request-ID"}
    assert {k: v for k, v in foreign_get.headers.items() if k not in generated} == {
        k: v for k, v in unknown_get.headers.items() if k not in generated
    }

    r = api.get(f"/rest/call?token_call={mine['token_call']}", headers=bearer(user_token))
    assert (r.status_code, r.json) == (200, mine)


def test_token_call_is_long_random_and_distinct(api, user_token):
    """token_call values are URL-safe, at least 32 characters and all different."""
    seen = set()
    for _ in range(6):
        call = start(api, user_token)
        assert TOKEN_CALL_RE.match(call["token_call"])
        assert len(call["token_call"]) >= 32
        seen.add(call["token_call"])
        assert (
            api.put(
                "/rest/call", data={"token_call": call["token_call"]}, headers=bearer(user_token)
            ).status_code
            == 200
        )
    assert len(seen) == 6
    # No shared prefix or suffix hinting at a counter or a timestamp.
    assert len({t[:8] for t in seen}) == 6
    assert len({t[-8:] for t in seen}) == 6


def test_other_methods_are_405_with_allow(api, user_token):
    """DELETE/PATCH on /rest/call are a 405 method_not_allowed listing the allowed methods."""
    for method in ("delete", "patch"):
        r = getattr(api, method)("/rest/call", headers=bearer(user_token))
        assert r.status_code == 405
        assert r.json == {
            "error": "method_not_allowed",
            "error_description": "This method is not allowed on this URL.",
        }
        allowed = {m.strip() for m in r.headers["Allow"].split(",")}
        assert {"GET", "POST", "PUT"} <= allowed
        assert "DELETE" not in allowed and "PATCH" not in allowed


def test_oversized_body_is_413(api, call_app, user_token):
    """A body over MAX_CONTENT_LENGTH (16 KiB) is a 413 and starts no call."""
    r = api.post(
        "/rest/call",
        data={"number": NUMBER, "padding": "x" * 20_000},
        headers=bearer(user_token),
    )
    assert r.status_code == 413
    assert r.json == {
        "error": "payload_too_large",
        "error_description": "The request body is too large.",
    }
    assert count_calls(call_app) == 0


def test_multipart_form_is_accepted(api, user_token, user, web_client):
    """A multipart/form-data body is read like a urlencoded one."""
    r = api.post(
        "/rest/call",
        data={"number": "+1 (415) 555-0123"},
        content_type="multipart/form-data",
        headers=bearer(user_token),
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    assert_ongoing(r.json, NUMBER, web_client.client_id, user.id)
