"""Numbers that went wrong on the way: a '+' lost to form encoding, letters for digits."""

from __future__ import annotations

import pytest

from tests.call_api.helpers import NUMBER, count_calls
from tests.conftest import bearer

FORM = "application/x-www-form-urlencoded"
NO_COUNTRY = (
    "The number cannot be called: it has no valid country code; write it in international "
    "form, e.g. +14155550123."
)


def invalid_number(description: str) -> dict[str, str]:
    return {"error": "invalid_number", "error_description": description}


def lost_plus(arrived: str, meant: str) -> dict[str, str]:
    return invalid_number(
        f"The number arrived as '{arrived}', starting with a space: in a form-encoded body an "
        f"unencoded '+' means a space. URL-encode the plus as %2B, for example "
        f"curl --data-urlencode 'number=+{meant}'."
    )


def post_raw(api, token: str, body: bytes, content_type: str = FORM):
    """POST /rest/call with ``body`` exactly as curl -d would send it."""
    return api.post("/rest/call", data=body, content_type=content_type, headers=bearer(token))


@pytest.mark.parametrize(
    "body, arrived, meant",
    [
        (b"number=+14155550123", " 14155550123", "14155550123"),
        (b"number=+1 415 555 0123", " 1 415 555 0123", "1 415 555 0123"),
        (b"number=+1+415+555+0123", " 1 415 555 0123", "1 415 555 0123"),
    ],
    ids=["compact", "spaced", "all-plus"],
)
def test_unencoded_plus_in_a_form_gets_the_way_to_send_it(
    api, call_app, user_token, body, arrived, meant
):
    """curl -d number=+1415… sends a '+' that form-decodes to a space: 400 with the fix."""
    r = post_raw(api, user_token, body)
    assert (r.status_code, r.json) == (400, lost_plus(arrived, meant))
    assert count_calls(call_app) == 0


def test_encoded_plus_is_the_number(api, user_token):
    """The same number with its '+' URL-encoded (%2B, what --data-urlencode sends): 201."""
    r = post_raw(api, user_token, b"number=%2B14155550123")
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.json["number"] == NUMBER


def test_lost_plus_is_not_guessed_with_a_default_region(api, user_token, make_call_app):
    """Even where ' 14155550123' would read as a national number, it is refused: calling a
    number the caller did not mean is worse than a 400."""
    us = make_call_app(CALL_DEFAULT_REGION="US").test_client()
    r = post_raw(us, user_token, b"number=+14155550123")
    assert (r.status_code, r.json) == (400, lost_plus(" 14155550123", "14155550123"))


def test_leading_space_outside_a_form_body_is_no_lost_plus(api, user_token):
    """In JSON (or multipart) a '+' cannot turn into a space: the usual reason is given."""
    r = api.post("/rest/call", json={"number": " 14155550123"}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (400, invalid_number(NO_COUNTRY))
    r = api.post(
        "/rest/call",
        data={"number": " 14155550123"},
        content_type="multipart/form-data",
        headers=bearer(user_token),
    )
    assert (r.status_code, r.json) == (400, invalid_number(NO_COUNTRY))


@pytest.mark.parametrize(
    "raw, description",
    [
        (
            "+1 415 CALL-NOW",
            "Letters are not accepted in numbers; dial the digits instead: +1 415 2255-669.",
        ),
        (
            "+1 800 FLOWERS",
            "Letters are not accepted in numbers; dial the digits instead: +1 800 3569377.",
        ),
        ("1-800-FLOWERS", "Letters are not accepted in numbers; dial the digits."),
        (
            "+1 415 555 O123",
            "Letters are not accepted in numbers; dial the digits instead: +1 415 555 6123.",
        ),
    ],
    ids=["vanity", "vanity-tail", "no-country", "letter-o"],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_letters_in_numbers_are_refused(api, call_app, user_token, raw, description, as_json):
    """libphonenumber would dial letters as keypad digits; the API refuses them instead."""
    kwargs = {"json": {"number": raw}} if as_json else {"data": {"number": raw}}
    r = api.post("/rest/call", headers=bearer(user_token), **kwargs)
    assert (r.status_code, r.json) == (400, invalid_number(description))
    assert count_calls(call_app) == 0


def test_lost_plus_in_xml(api, user_token):
    """The hint reaches XML clients too."""
    r = api.post(
        "/rest/call",
        data=b"number=+14155550123",
        content_type=FORM,
        headers={**bearer(user_token), "Accept": "application/xml"},
    )
    assert r.status_code == 400
    assert r.mimetype == "application/xml"
    text = r.get_data(as_text=True)
    assert "<error>invalid_number</error>" in text
    assert "curl --data-urlencode 'number=+14155550123'" in text
