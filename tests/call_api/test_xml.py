"""XML responses: ``Accept: application/xml`` or ``?format=xml`` carry the JSON fields."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.call_api.helpers import (
    NOT_FOUND,
    NUMBER,
    OTHER_NUMBER,
    as_text,
    count_calls,
    start,
    xml_fields,
    xml_root,
)
from tests.conftest import bearer, make_user

XML_ASKS = [
    ({"Accept": "application/xml"}, ""),
    ({"Accept": "text/xml"}, ""),
    ({"Accept": "application/json;q=0.5, application/xml"}, ""),
    ({}, "format=xml"),
    ({"Accept": "application/json"}, "format=xml"),
    ({}, "format=XML"),
]


def _url(path: str, query: str, extra: str = "") -> str:
    parts = [p for p in (extra, query) if p]
    return path + ("?" + "&".join(parts) if parts else "")


@pytest.mark.parametrize("headers, query", XML_ASKS)
def test_post_get_put_in_xml(api, user_token, headers, query):
    """Create, read and end answer XML (root <call>) with the same values as the JSON."""
    h = {**bearer(user_token), **headers}
    r = api.post(_url("/rest/call", query), data={"number": "+1 (415) 555-0123"}, headers=h)
    assert r.status_code == 201
    assert r.mimetype == "application/xml"
    root = xml_root(r.get_data())
    assert root.tag == "call"
    created = xml_fields(root)
    token_call = created["token_call"]
    assert r.headers["Location"] == f"/rest/call?token_call={token_call}"

    as_json = api.get(f"/rest/call?token_call={token_call}", headers=bearer(user_token))
    assert as_json.mimetype == "application/json"
    assert created == as_text(as_json.json)
    assert created["number"] == "+14155550123"
    assert created["ended_at"] is None and created["duration"] is None

    r = api.get(_url("/rest/call", query, f"token_call={token_call}"), headers=h)
    assert r.status_code == 200 and r.mimetype == "application/xml"
    assert xml_fields(xml_root(r.get_data())) == created

    r = api.put(_url("/rest/call", query), data={"token_call": token_call}, headers=h)
    assert r.status_code == 200 and r.mimetype == "application/xml"
    ended = xml_fields(xml_root(r.get_data()))
    final = api.get(f"/rest/call?token_call={token_call}", headers=bearer(user_token)).json
    assert final["status"] == "ended"
    assert ended == as_text(final)


@pytest.mark.parametrize("headers, query", XML_ASKS[:1] + XML_ASKS[3:4])
def test_list_in_xml(api, user_token, headers, query):
    """The ongoing list is <response><calls><call>…</call>…</calls></response>, in order."""
    first = start(api, user_token, NUMBER)
    second = start(api, user_token, OTHER_NUMBER)
    r = api.get(_url("/rest/call", query), headers={**bearer(user_token), **headers})
    assert r.status_code == 200 and r.mimetype == "application/xml"
    root = xml_root(r.get_data())
    assert root.tag == "response"
    assert [child.tag for child in root] == ["calls"]
    items = list(root.find("calls"))
    assert [item.tag for item in items] == ["call", "call"]
    assert [xml_fields(item) for item in items] == [as_text(first), as_text(second)]


def test_empty_list_in_xml(api, user_token):
    """No ongoing calls is an empty <calls/> element, not a missing one."""
    r = api.get("/rest/call?format=xml", headers=bearer(user_token))
    root = xml_root(r.get_data())
    assert root.tag == "response"
    assert [(c.tag, len(c), c.text) for c in root] == [("calls", 0, None)]


def test_json_is_the_default_and_format_json_wins(api, user_token):
    """Without an XML preference (or with ?format=json, or Accept */*), the answer is JSON."""
    call = start(api, user_token)
    url = f"/rest/call?token_call={call['token_call']}"
    for headers, query in [
        ({}, ""),
        ({"Accept": "*/*"}, ""),
        ({"Accept": "application/json"}, ""),
        ({"Accept": "application/xml"}, "&format=json"),
        ({"Accept": "text/html"}, ""),
    ]:
        r = api.get(url + query, headers={**bearer(user_token), **headers})
        assert (r.status_code, r.mimetype, r.json) == (200, "application/json", call)
        assert "Accept" in r.headers["Vary"]


@pytest.mark.parametrize(
    "method, kwargs",
    [("get", {}), ("post", {"data": {"number": NUMBER}}), ("put", {"data": {"token_call": "x"}})],
)
def test_format_bogus_is_406_and_changes_nothing(api, call_app, user_token, method, kwargs):
    """?format=bogus is a 406 not_acceptable (in JSON) and the request has no effect."""
    call = start(api, user_token)
    if method == "put":
        kwargs = {"data": {"token_call": call["token_call"]}}
    r = getattr(api, method)("/rest/call?format=bogus", headers=bearer(user_token), **kwargs)
    assert r.status_code == 406
    assert r.mimetype == "application/json"
    assert r.json == {"error": "not_acceptable", "error_description": "format must be json or xml."}
    assert count_calls(call_app) == 1
    assert api.get("/rest/call", headers=bearer(user_token)).json == {"calls": [call]}


@pytest.mark.parametrize("headers, query", XML_ASKS[:1] + XML_ASKS[3:4])
def test_errors_in_xml_when_asked(api, user_token, headers, query):
    """Error bodies are <error_response> with the same fields as the JSON errors."""
    h = {**bearer(user_token), **headers}
    r = api.get(_url("/rest/call", query, "token_call=nope"), headers=h)
    assert r.status_code == 404 and r.mimetype == "application/xml"
    root = xml_root(r.get_data())
    assert root.tag == "error_response"
    assert xml_fields(root) == NOT_FOUND

    r = api.post(_url("/rest/call", query), data={"number": "abc"}, headers=h)
    assert r.status_code == 400 and r.mimetype == "application/xml"
    assert xml_fields(xml_root(r.get_data())) == {
        "error": "invalid_number",
        "error_description": "The number cannot be called: it is not a phone number.",
    }

    r = api.post(_url("/rest/call", query), data={}, headers=h)
    assert xml_fields(xml_root(r.get_data())) == {
        "error": "invalid_number",
        "error_description": "The 'number' parameter is required.",
    }

    start(api, user_token)
    start(api, user_token)
    r = api.post(_url("/rest/call", query), data={"number": NUMBER}, headers=h)
    assert r.status_code == 409 and r.mimetype == "application/xml"
    assert xml_fields(xml_root(r.get_data())) == {
        "error": "max_calls_exceeded",
        "error_description": "You already have 2 ongoing call(s); the limit is 2.",
        "max_ongoing": "2",
        "ongoing": "2",
    }

    r = api.get(_url("/rest/call", query), headers=headers)  # no token
    assert r.status_code == 401 and r.mimetype == "application/xml"
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="clickcall"'
    assert xml_fields(xml_root(r.get_data())) == {
        "error": "invalid_request",
        "error_description": "An access token is required.",
    }


SPECIAL = "<&>\"'"


def test_xml_escaping_of_subject_and_client_id_round_trips(api, forge):
    """A subject and client_id full of XML specials (token signed by the real key) come back
    from the XML parser exactly as the JSON has them, in the call and in the list."""
    token = forge(sub=f"user {SPECIAL} ]]> &amp;", client_id=f"app{SPECIAL}")
    call = start(api, token)
    assert call["subject"] == f"user {SPECIAL} ]]> &amp;"
    assert call["client_id"] == f"app{SPECIAL}"

    r = api.get(f"/rest/call?token_call={call['token_call']}&format=xml", headers=bearer(token))
    assert r.status_code == 200
    assert xml_fields(xml_root(r.get_data())) == as_text(call)

    r = api.get("/rest/call?format=xml", headers=bearer(token))
    items = list(xml_root(r.get_data()).find("calls"))
    assert [xml_fields(i) for i in items] == [as_text(call)]


def test_xml_for_a_user_with_special_characters_in_the_username(api, auth_app, mint, web_client):
    """A real user whose username has XML specials gets well-formed XML equal to the JSON."""
    weird = make_user(auth_app, f"eve {SPECIAL}", "eve-password")
    token = mint(weird, web_client)
    call = start(api, token)
    assert call["subject"] == weird.id
    r = api.get(
        f"/rest/call?token_call={call['token_call']}",
        headers={**bearer(token), "Accept": "application/xml"},
    )
    assert xml_fields(xml_root(r.get_data())) == as_text(call)


def test_admin_xml_escapes_subject_in_path(api, forge, admin_token):
    """The admin views answer XML too, with a special-character subject from the URL."""
    sub = f"user {SPECIAL}"
    call = start(api, forge(sub=sub))
    r = api.get(f"/admin/users/{quote(sub)}?format=xml", headers=bearer(admin_token))
    assert r.status_code == 200 and r.mimetype == "application/xml"
    root = xml_root(r.get_data())
    assert root.tag == "user"
    assert [c.tag for c in root] == [
        "subject",
        "max_ongoing",
        "limit_source",
        "ongoing",
        "recent_calls",
    ]
    assert root.find("subject").text == sub
    recent = list(root.find("recent_calls"))
    assert [xml_fields(i) for i in recent] == [as_text(call)]
    assert [i.tag for i in recent] == ["recent_call"]
