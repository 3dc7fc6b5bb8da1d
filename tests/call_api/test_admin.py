"""The admin interface (scope ``admin``): user summaries, call pages, any call, force-end,
limits."""

from __future__ import annotations

import pytest

from tests.call_api.helpers import (
    NOT_FOUND,
    NUMBER,
    OTHER_NUMBER,
    assert_ended,
    start,
)
from tests.conftest import bearer, make_user


def bad_request(description: str) -> dict[str, str]:
    return {"error": "invalid_request", "error_description": description}


def end(api, token: str, call: dict) -> dict:
    r = api.put("/rest/call", data={"token_call": call["token_call"]}, headers=bearer(token))
    assert r.status_code == 200
    return dict(r.json)


def test_user_summary(api, user_token, admin_token, user):
    """GET /admin/users/<sub>: limit, its source, ongoing count and recent calls newest first."""
    first = start(api, user_token, NUMBER)
    second = start(api, user_token, OTHER_NUMBER)
    first = end(api, user_token, first)
    r = api.get(f"/admin/users/{user.id}", headers=bearer(admin_token))
    assert r.status_code == 200
    assert r.json == {
        "subject": user.id,
        "max_ongoing": 2,
        "limit_source": "default",
        "ongoing": 1,
        "recent_calls": [second, first],
    }


def test_user_summary_of_unknown_subject(api, admin_token):
    """A subject that never called has the default limit and nothing else (not an error)."""
    r = api.get("/admin/users/nobody-at-all", headers=bearer(admin_token))
    assert (r.status_code, r.json) == (
        200,
        {
            "subject": "nobody-at-all",
            "max_ongoing": 2,
            "limit_source": "default",
            "ongoing": 0,
            "recent_calls": [],
        },
    )


def test_user_summary_shows_only_that_user(
    api, auth_app, mint, web_client, user_token, admin_token, user
):
    """Another user's calls never appear in a user's summary."""
    bob = make_user(auth_app, "bob", "bob-password")
    start(api, mint(bob, web_client))
    mine = start(api, user_token)
    r = api.get(f"/admin/users/{user.id}", headers=bearer(admin_token))
    assert r.json["recent_calls"] == [mine]
    assert r.json["ongoing"] == 1


def test_set_limit_and_reset_with_null(api, admin_token, user, user_token):
    """PUT limit returns the summary with limit_source user; null returns to the default.
    Form bodies and numeric strings work too."""
    url = f"/admin/users/{user.id}/limit"
    r = api.put(url, json={"max_ongoing": 5}, headers=bearer(admin_token))
    assert (r.status_code, r.json) == (
        200,
        {
            "subject": user.id,
            "max_ongoing": 5,
            "limit_source": "user",
            "ongoing": 0,
            "recent_calls": [],
        },
    )
    assert api.get(f"/admin/users/{user.id}", headers=bearer(admin_token)).json == r.json

    r = api.put(url, data={"max_ongoing": "7"}, headers=bearer(admin_token))
    assert (r.status_code, r.json["max_ongoing"], r.json["limit_source"]) == (200, 7, "user")
    r = api.put(url, json={"max_ongoing": "0"}, headers=bearer(admin_token))
    assert (r.status_code, r.json["max_ongoing"]) == (200, 0)
    r = api.put(url, json={"max_ongoing": 10000}, headers=bearer(admin_token))
    assert (r.status_code, r.json["max_ongoing"]) == (200, 10000)

    r = api.put(url, json={"max_ongoing": None}, headers=bearer(admin_token))
    assert (r.status_code, r.json) == (
        200,
        {
            "subject": user.id,
            "max_ongoing": 2,
            "limit_source": "default",
            "ongoing": 0,
            "recent_calls": [],
        },
    )
    start(api, user_token)
    start(api, user_token)
    assert (
        api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token)).status_code
        == 409
    )


RANGE = "max_ongoing must be an integer from 0 to 10000."
TYPE = "max_ongoing must be an integer from 0 to 10000 or null."


@pytest.mark.parametrize(
    "kwargs, description",
    [
        ({"json": {"max_ongoing": -1}}, RANGE),
        ({"json": {"max_ongoing": "-1"}}, RANGE),
        ({"json": {"max_ongoing": 10001}}, RANGE),
        ({"json": {"max_ongoing": 10**30}}, RANGE),
        ({"json": {"max_ongoing": "x"}}, TYPE),
        ({"json": {"max_ongoing": True}}, TYPE),
        ({"json": {"max_ongoing": False}}, TYPE),
        ({"json": {"max_ongoing": 1.5}}, TYPE),
        ({"json": {"max_ongoing": 2.0}}, TYPE),
        ({"json": {"max_ongoing": [1]}}, TYPE),
        ({"json": {"max_ongoing": ""}}, TYPE),
        ({"json": {"max_ongoing": "\u00b2"}}, TYPE),
        ({"json": {"max_ongoing": "1_0"}}, TYPE),
        ({"json": {"max_ongoing": "--5"}}, TYPE),
        ({"json": {"max_ongoing": "\u0663"}}, TYPE),
        ({"data": {"max_ongoing": ""}}, TYPE),
        ({"data": {"max_ongoing": "three"}}, TYPE),
        ({"json": {}}, "The 'max_ongoing' parameter is required."),
        ({"json": {"limit": 3}}, "The 'max_ongoing' parameter is required."),
        ({"data": {}}, "The 'max_ongoing' parameter is required."),
        ({}, "The 'max_ongoing' parameter is required."),
        ({"json": [3]}, "The body must be a JSON object."),
    ],
)
def test_set_limit_rejects_bad_values(api, admin_token, user, kwargs, description):
    """Bad limits are a 400 with a precise description and leave the default in place."""
    r = api.put(f"/admin/users/{user.id}/limit", headers=bearer(admin_token), **kwargs)
    assert (r.status_code, r.json) == (400, bad_request(description))
    summary = api.get(f"/admin/users/{user.id}", headers=bearer(admin_token)).json
    assert (summary["max_ongoing"], summary["limit_source"]) == (2, "default")


def test_set_limit_text_body_is_415(api, admin_token, user):
    """A text/plain body is a 415."""
    r = api.put(
        f"/admin/users/{user.id}/limit",
        data="3",
        content_type="text/plain",
        headers=bearer(admin_token),
    )
    assert r.status_code == 415
    assert r.json["error"] == "unsupported_media_type"


@pytest.fixture
def five_calls(api, user_token, admin_token, user):
    """Five calls for the user, newest first: the two oldest ended, three ongoing."""
    api.put(f"/admin/users/{user.id}/limit", json={"max_ongoing": 10}, headers=bearer(admin_token))
    calls = [start(api, user_token) for _ in range(5)]
    calls[0] = end(api, user_token, calls[0])
    calls[1] = end(api, user_token, calls[1])
    return list(reversed(calls))


def test_user_calls_pagination(api, admin_token, user, five_calls):
    """status=all, per_page=2: pages of 2, 2, 1 newest first with total and a next link that
    leads to the next page; the last page has next null."""
    base = f"/admin/users/{user.id}/calls"
    url = f"{base}?status=all&per_page=2"
    pages = []
    while url:
        r = api.get(url, headers=bearer(admin_token))
        assert r.status_code == 200, r.get_data(as_text=True)
        pages.append(r.json)
        url = r.json["next"]
    assert pages == [
        {
            "subject": user.id,
            "status": "all",
            "page": 1,
            "per_page": 2,
            "total": 5,
            "next": f"{base}?status=all&page=2&per_page=2",
            "calls": five_calls[0:2],
        },
        {
            "subject": user.id,
            "status": "all",
            "page": 2,
            "per_page": 2,
            "total": 5,
            "next": f"{base}?status=all&page=3&per_page=2",
            "calls": five_calls[2:4],
        },
        {
            "subject": user.id,
            "status": "all",
            "page": 3,
            "per_page": 2,
            "total": 5,
            "next": None,
            "calls": five_calls[4:5],
        },
    ]


def test_user_calls_status_filter_and_defaults(api, admin_token, user, five_calls):
    """status=ongoing / ended filter; without parameters: all, page 1, 20 per page."""
    base = f"/admin/users/{user.id}/calls"
    r = api.get(f"{base}?status=ongoing", headers=bearer(admin_token))
    assert r.json == {
        "subject": user.id,
        "status": "ongoing",
        "page": 1,
        "per_page": 20,
        "total": 3,
        "next": None,
        "calls": five_calls[0:3],
    }
    r = api.get(f"{base}?status=ended", headers=bearer(admin_token))
    assert r.json == {
        "subject": user.id,
        "status": "ended",
        "page": 1,
        "per_page": 20,
        "total": 2,
        "next": None,
        "calls": five_calls[3:5],
    }
    r = api.get(base, headers=bearer(admin_token))
    assert r.json == {
        "subject": user.id,
        "status": "all",
        "page": 1,
        "per_page": 20,
        "total": 5,
        "next": None,
        "calls": five_calls,
    }
    r = api.get(f"{base}?page=9", headers=bearer(admin_token))
    assert (r.status_code, r.json["calls"], r.json["total"], r.json["next"]) == (200, [], 5, None)


def test_user_calls_filter_by_state(api, admin_token, user, five_calls):
    """status may also be a lifecycle state: the three live calls are queued, the two hung
    up before an answer are canceled; a state no call is in gives an empty page."""
    base = f"/admin/users/{user.id}/calls"
    expected = {
        "queued": five_calls[0:3],
        "canceled": five_calls[3:5],
        "completed": [],
        "in-progress": [],
    }
    for state, rows in expected.items():
        r = api.get(f"{base}?status={state}&per_page=2", headers=bearer(admin_token))
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.json == {
            "subject": user.id,
            "status": state,
            "page": 1,
            "per_page": 2,
            "total": len(rows),
            "next": f"{base}?status={state}&page=2&per_page=2" if len(rows) > 2 else None,
            "calls": rows[:2],
        }


BAD_STATUS = (
    "status must be ongoing, ended, all or a call state (queued, ringing, in-progress, "
    "completed, busy, no-answer, failed, canceled, expired)."
)


@pytest.mark.parametrize(
    "query, description",
    [
        ("per_page=101", "'per_page' must be from 1 to 100."),
        ("per_page=0", "'per_page' must be from 1 to 100."),
        ("per_page=x", "'per_page' must be an integer."),
        ("page=0", "'page' must be from 1 to 1000000."),
        ("page=-3", "'page' must be from 1 to 1000000."),
        ("page=1.5", "'page' must be an integer."),
        ("page=", "'page' must be an integer."),
        ("status=bogus", BAD_STATUS),
        ("status=", BAD_STATUS),
        ("status=ONGOING", BAD_STATUS),
        ("status=in_progress", BAD_STATUS),
        ("status=Queued", BAD_STATUS),
    ],
)
def test_user_calls_bad_parameters(api, admin_token, user, query, description):
    """Out-of-range or malformed paging and filter parameters are a 400."""
    r = api.get(f"/admin/users/{user.id}/calls?{query}", headers=bearer(admin_token))
    assert (r.status_code, r.json) == (400, bad_request(description))


def test_admin_reads_any_call(api, auth_app, mint, web_client, user_token, admin_token):
    """GET /admin/calls/<token_call> returns any user's call as its owner sees it."""
    bob = make_user(auth_app, "bob", "bob-password")
    bob_token = mint(bob, web_client)
    for token in (user_token, bob_token):
        call = start(api, token)
        r = api.get(f"/admin/calls/{call['token_call']}", headers=bearer(admin_token))
        assert (r.status_code, r.json) == (200, call)


@pytest.mark.parametrize("token_call", ["unknown-call", "z" * 65])
def test_admin_unknown_call_is_404(api, admin_token, token_call):
    """An unknown call is a 404 not_found, for reading and for force-ending."""
    r = api.get(f"/admin/calls/{token_call}", headers=bearer(admin_token))
    assert (r.status_code, r.json) == (404, NOT_FOUND)
    r = api.post(f"/admin/calls/{token_call}/end", headers=bearer(admin_token))
    assert (r.status_code, r.json) == (404, NOT_FOUND)


def test_admin_force_end(api, user_token, admin_token):
    """POST /admin/calls/<token>/end ends the call with end_reason admin; repeating it, and
    the owner's PUT afterwards, return the same final record."""
    call = start(api, user_token)
    r = api.post(f"/admin/calls/{call['token_call']}/end", headers=bearer(admin_token))
    assert r.status_code == 200
    assert_ended(r.json, call, "admin")
    final = r.json
    r = api.post(f"/admin/calls/{call['token_call']}/end", headers=bearer(admin_token))
    assert (r.status_code, r.json) == (200, final)
    r = api.put("/rest/call", data={"token_call": call["token_call"]}, headers=bearer(user_token))
    assert (r.status_code, r.json) == (200, final)
    r = api.get(f"/rest/call?token_call={call['token_call']}", headers=bearer(user_token))
    assert r.json == final
    assert api.get("/rest/call", headers=bearer(user_token)).json == {"calls": []}


def test_admin_force_end_of_hung_up_call_changes_nothing(api, user_token, admin_token):
    """Force-ending a call the user already hung up keeps end_reason hangup."""
    call = end(api, user_token, start(api, user_token))
    r = api.post(f"/admin/calls/{call['token_call']}/end", headers=bearer(admin_token))
    assert (r.status_code, r.json) == (200, call)


def test_force_end_frees_a_slot(api, user_token, admin_token):
    """After an admin ends one of two ongoing calls, the user may start another."""
    first = start(api, user_token)
    start(api, user_token)
    assert (
        api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token)).status_code
        == 409
    )
    api.post(f"/admin/calls/{first['token_call']}/end", headers=bearer(admin_token))
    start(api, user_token)


@pytest.mark.parametrize("sub", ["s" * 256, "a%00b"], ids=["too-long", "nul"])
def test_admin_unusable_subject_is_400(api, admin_token, sub):
    """A subject over 255 characters, or with a NUL, is a 400 on every subject route (not a
    lookup, and not a database error on PostgreSQL)."""
    expected = bad_request("The subject must be 1–255 characters, without NUL.")
    for r in (
        api.get(f"/admin/users/{sub}", headers=bearer(admin_token)),
        api.get(f"/admin/users/{sub}/calls", headers=bearer(admin_token)),
        api.put(f"/admin/users/{sub}/limit", json={"max_ongoing": 3}, headers=bearer(admin_token)),
    ):
        assert (r.status_code, r.json) == (400, expected)
