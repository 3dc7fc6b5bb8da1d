"""Hostile inputs at the call API, one test per attack, each asserting the exact refusal.

All in-process (the ``api`` test client) on both backends. Whatever is thrown at the API,
it answers with a 4xx and the documented error body, never a 500, and the ``calls`` table
is left exactly as it was.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree as ET

import jwt
import pytest
import sqlalchemy as sa

from tests.conftest import AUDIENCE, ISSUER, bearer, make_user

NUMBER = "+14155550123"
SQL_INJECTIONS = ["' OR 1=1 --", '"; DROP TABLE calls; --']
MAX_CONTENT_LENGTH = 16 * 1024


# ---------------------------------------------------------------- helpers


def calls_snapshot(app: Any) -> list[tuple[Any, ...]]:
    """Every row of ``calls`` (raw SQL, so a dropped or altered table would show)."""
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        with db.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT token_call, subject, client_id, number, status, end_reason "
                    "FROM calls ORDER BY id"
                )
            ).all()
    return [tuple(r) for r in rows]


def start(api: Any, token: str, number: str = NUMBER) -> dict[str, Any]:
    r = api.post("/rest/call", data={"number": number}, headers=bearer(token))
    assert r.status_code == 201, r.get_data(as_text=True)
    return dict(r.json)


def assert_error(r: Any, status: int, error: str) -> None:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    assert r.mimetype == "application/json", r.mimetype
    assert r.json["error"] == error, r.json
    assert r.json.get("error_description"), r.json


def mint(keys_dir: Any, **claims: Any) -> str:
    """A correctly signed access token with chosen claims (as the auth server would sign)."""
    from shared.keys import KeyStore

    key = KeyStore(keys_dir).current()
    assert key is not None
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "subject-" + uuid.uuid4().hex,
        "client_id": "client-" + uuid.uuid4().hex[:8],
        "scope": "call",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "username": "minted-user",
        **claims,
    }
    return jwt.encode(
        body, key.private_key, algorithm=key.algorithm, headers={"typ": "at+jwt", "kid": key.kid}
    )


@pytest.fixture
def seeded(api: Any, call_app: Any, user_token: str) -> list[tuple[Any, ...]]:
    """Two calls (one ongoing, one ended) so an injection that touched rows would show."""
    first = start(api, user_token)
    start(api, user_token, "+442071838750")
    r = api.put("/rest/call", data={"token_call": first["token_call"]}, headers=bearer(user_token))
    assert r.status_code == 200
    snapshot = calls_snapshot(call_app)
    assert len(snapshot) == 2
    return snapshot


# ---------------------------------------------------------------- size limits


def test_oversized_form_body_is_413(api, call_app, user_token, seeded):
    body = {"number": NUMBER, "padding": "x" * (MAX_CONTENT_LENGTH + 1)}
    r = api.post("/rest/call", data=body, headers=bearer(user_token))
    assert_error(r, 413, "payload_too_large")
    assert calls_snapshot(call_app) == seeded


def test_oversized_json_body_is_413(api, call_app, user_token, seeded):
    payload = json.dumps({"number": NUMBER, "padding": "x" * (MAX_CONTENT_LENGTH + 1)})
    r = api.post(
        "/rest/call", data=payload, content_type="application/json", headers=bearer(user_token)
    )
    assert_error(r, 413, "payload_too_large")
    assert calls_snapshot(call_app) == seeded


def test_oversized_body_without_token_is_413(api, call_app, seeded):
    r = api.post("/rest/call", data={"number": NUMBER, "p": "x" * (MAX_CONTENT_LENGTH + 1)})
    assert_error(r, 413, "payload_too_large")
    assert calls_snapshot(call_app) == seeded


def test_oversized_authorization_header_is_invalid_token(api, call_app, user_token, seeded):
    huge = user_token + "A" * (10 * 1024)
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(huge))
    assert_error(r, 401, "invalid_token")
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    r = api.get("/rest/call", headers=bearer("x" * (10 * 1024)))
    assert_error(r, 401, "invalid_token")
    assert calls_snapshot(call_app) == seeded


# ---------------------------------------------------------------- encodings


def test_non_utf8_form_body_is_400(api, call_app, user_token, seeded):
    # raw non-UTF-8 bytes: Werkzeug drops the undecodable form, so the number is missing
    r = api.post(
        "/rest/call",
        data=b"number=\xff\xfe\xfa+14155550123",
        content_type="application/x-www-form-urlencoded",
        headers=bearer(user_token),
    )
    assert_error(r, 400, "invalid_number")
    # percent-encoded non-UTF-8 bytes: decoded with replacement characters, not a number
    r = api.post(
        "/rest/call",
        data=b"number=%FF%FE%C3%28%2B14155550123",
        content_type="application/x-www-form-urlencoded",
        headers=bearer(user_token),
    )
    assert_error(r, 400, "invalid_number")
    assert calls_snapshot(call_app) == seeded


def test_non_utf8_form_body_on_put_is_400(api, call_app, user_token, seeded):
    r = api.put(
        "/rest/call",
        data=b"token_call=\xff\xfe" + seeded[1][0].encode(),
        content_type="application/x-www-form-urlencoded",
        headers=bearer(user_token),
    )
    assert_error(r, 400, "invalid_request")
    r = api.put(
        "/rest/call",
        data=b"token_call=%FF%FE%C3%28",
        content_type="application/x-www-form-urlencoded",
        headers=bearer(user_token),
    )
    assert_error(r, 404, "not_found")
    assert calls_snapshot(call_app) == seeded


def test_non_utf8_json_body_is_400(api, call_app, user_token, seeded):
    r = api.post(
        "/rest/call",
        data=b'{"number": "\xff\xfe+14155550123"}',
        content_type="application/json",
        headers=bearer(user_token),
    )
    assert_error(r, 400, "invalid_request")
    assert calls_snapshot(call_app) == seeded


def test_non_utf8_json_charset_is_400(api, call_app, user_token, seeded):
    r = api.post(
        "/rest/call",
        data='{"number": "+14155550123"}'.encode("utf-16"),
        content_type="application/json",
        headers=bearer(user_token),
    )
    assert r.status_code in (400, 201), r.get_data(as_text=True)  # UTF-16 JSON is RFC-legal
    if r.status_code == 400:
        assert r.json["error"] == "invalid_request"
        assert calls_snapshot(call_app) == seeded


# ---------------------------------------------------------------- the number


@pytest.mark.parametrize(
    "number",
    [
        "+1415\x005550123",
        "+14155550123\x00",
        "+1415\n5550123",
        "+1415\r\n5550123",
        "\x1b[31m+14155550123",
        "+1415\x7f5550123",
        "+1415\x085550123",
    ],
    ids=["nul", "trailing-nul", "lf", "crlf", "ansi-escape", "del", "backspace"],
)
def test_control_characters_in_number_are_invalid_number(api, call_app, user_token, seeded, number):
    r = api.post("/rest/call", data={"number": number}, headers=bearer(user_token))
    assert_error(r, 400, "invalid_number")
    r = api.post("/rest/call", json={"number": number}, headers=bearer(user_token))
    assert_error(r, 400, "invalid_number")
    assert calls_snapshot(call_app) == seeded


@pytest.mark.parametrize("payload", SQL_INJECTIONS)
def test_sql_injection_in_number(api, call_app, user_token, seeded, payload):
    for send in (
        {"data": {"number": payload}},
        {"json": {"number": payload}},
        {"data": {"number": NUMBER + payload}},
    ):
        r = api.post("/rest/call", headers=bearer(user_token), **send)
        assert_error(r, 400, "invalid_number")
    assert calls_snapshot(call_app) == seeded


# ---------------------------------------------------------------- token_call


@pytest.mark.parametrize("payload", SQL_INJECTIONS)
def test_sql_injection_in_token_call_get(api, call_app, user_token, seeded, payload):
    r = api.get("/rest/call?token_call=" + quote(payload, safe=""), headers=bearer(user_token))
    assert_error(r, 404, "not_found")
    # a real token followed by the injection is still not a token
    real = seeded[0][0]
    r = api.get(
        "/rest/call?token_call=" + quote(real + payload, safe=""), headers=bearer(user_token)
    )
    assert_error(r, 404, "not_found")
    assert calls_snapshot(call_app) == seeded


@pytest.mark.parametrize("payload", SQL_INJECTIONS)
def test_sql_injection_in_token_call_put(api, call_app, user_token, seeded, payload):
    r = api.put("/rest/call", data={"token_call": payload}, headers=bearer(user_token))
    assert_error(r, 404, "not_found")
    r = api.put("/rest/call", json={"token_call": payload}, headers=bearer(user_token))
    assert_error(r, 404, "not_found")
    r = api.put("/rest/call?token_call=" + quote(payload, safe=""), headers=bearer(user_token))
    assert_error(r, 404, "not_found")
    ongoing = seeded[1][0]
    r = api.put("/rest/call", data={"token_call": ongoing + payload}, headers=bearer(user_token))
    assert_error(r, 404, "not_found")
    assert calls_snapshot(call_app) == seeded


# ---------------------------------------------------------------- Idempotency-Key


@pytest.mark.parametrize("payload", SQL_INJECTIONS)
def test_sql_injection_in_idempotency_key(api, call_app, user_token, seeded, payload):
    r = api.post(
        "/rest/call",
        data={"number": NUMBER},
        headers={**bearer(user_token), "Idempotency-Key": payload},
    )
    assert_error(r, 400, "invalid_request")
    assert calls_snapshot(call_app) == seeded


def test_sql_metacharacters_without_spaces_in_idempotency_key_are_just_a_key(
    api, call_app, user_token, seeded
):
    """Visible-ASCII keys are legal; quotes and dashes must be stored and matched literally."""
    key = "'OR'1'='1'--;DROP/**/TABLE/**/calls;--"
    first = api.post(
        "/rest/call",
        data={"number": NUMBER},
        headers={**bearer(user_token), "Idempotency-Key": key},
    )
    assert first.status_code == 201, first.get_data(as_text=True)
    again = api.post(
        "/rest/call",
        data={"number": NUMBER},
        headers={**bearer(user_token), "Idempotency-Key": key},
    )
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["token_call"] == first.json["token_call"]
    other = api.post(
        "/rest/call",
        data={"number": NUMBER},
        headers={**bearer(user_token), "Idempotency-Key": "'OR'1'='1'--"},
    )
    assert_error(other, 409, "max_calls_exceeded")  # a different key, not a wildcard match
    snapshot = calls_snapshot(call_app)
    assert snapshot[:2] == seeded and len(snapshot) == 3


@pytest.mark.parametrize(
    "key",
    ["a\x00b", "a\tb", "a b", "é" * 3, "k" * 256, ""],
    ids=["nul", "tab", "space", "non-ascii", "too-long", "empty"],
)
def test_malformed_idempotency_key_is_400(api, call_app, user_token, seeded, key):
    r = api.post(
        "/rest/call",
        data={"number": NUMBER},
        headers={**bearer(user_token), "Idempotency-Key": key},
    )
    assert_error(r, 400, "invalid_request")
    assert calls_snapshot(call_app) == seeded


# ---------------------------------------------------------------- admin paths


@pytest.mark.parametrize("payload", SQL_INJECTIONS)
def test_sql_injection_in_admin_subject_paths(api, call_app, admin_token, user, seeded, payload):
    sub = quote(payload, safe="")
    # An unknown subject is simply a user with no calls: nothing of anyone else's shows up.
    r = api.get(f"/admin/users/{sub}", headers=bearer(admin_token))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["subject"] == payload
    assert r.json["ongoing"] == 0 and r.json["recent_calls"] == []
    r = api.get(f"/admin/users/{sub}/calls?status=all", headers=bearer(admin_token))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["total"] == 0 and r.json["calls"] == []
    r = api.put(f"/admin/users/{sub}/limit", json={"max_ongoing": 0}, headers=bearer(admin_token))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["subject"] == payload and r.json["max_ongoing"] == 0
    # only that literal subject was changed: the real user keeps the default limit
    r = api.get(f"/admin/users/{quote(user.id, safe='')}", headers=bearer(admin_token))
    assert r.json["max_ongoing"] == 2 and r.json["limit_source"] == "default"
    # injection in the status / paging parameters
    r = api.get(
        f"/admin/users/{quote(user.id, safe='')}/calls?status={sub}", headers=bearer(admin_token)
    )
    assert_error(r, 400, "invalid_request")
    r = api.get(
        f"/admin/users/{quote(user.id, safe='')}/calls?page={sub}", headers=bearer(admin_token)
    )
    assert_error(r, 400, "invalid_request")
    # the limit value itself
    r = api.put(
        f"/admin/users/{quote(user.id, safe='')}/limit",
        json={"max_ongoing": payload},
        headers=bearer(admin_token),
    )
    assert_error(r, 400, "invalid_request")
    assert calls_snapshot(call_app) == seeded


@pytest.mark.parametrize("payload", SQL_INJECTIONS)
def test_sql_injection_in_admin_call_paths(api, call_app, admin_token, seeded, payload):
    token = quote(payload, safe="")
    r = api.get(f"/admin/calls/{token}", headers=bearer(admin_token))
    assert_error(r, 404, "not_found")
    r = api.post(f"/admin/calls/{token}/end", headers=bearer(admin_token))
    assert_error(r, 404, "not_found")
    ongoing = seeded[1][0]
    r = api.post(
        f"/admin/calls/{quote(ongoing + payload, safe='')}/end", headers=bearer(admin_token)
    )
    assert_error(r, 404, "not_found")
    assert calls_snapshot(call_app) == seeded


def test_overlong_admin_subject_is_400(api, admin_token):
    r = api.get("/admin/users/" + "a" * 256, headers=bearer(admin_token))
    assert_error(r, 400, "invalid_request")


# ---------------------------------------------------------------- XML output

XML_NASTY = "<&>\"' ]]> &amp; <!-- x --> <![CDATA[y]]>"


def xml_to_dict(element: ET.Element) -> Any:
    """The renderer's XML back into the JSON shape (``nil="true"`` → None)."""
    if element.get("nil") == "true":
        return None
    children = list(element)
    if not children:
        return element.text or ""
    return {child.tag: xml_to_dict(child) for child in children}


def call_from_xml(element: ET.Element) -> dict[str, Any]:
    out = {}
    for child in element:
        value = xml_to_dict(child)
        if child.tag in ("duration", "time_limit", "ring_timeout") and value is not None:
            value = int(value)
        out[child.tag] = value
    return out


def get_json_and_xml(api: Any, url: str, token: str) -> tuple[dict[str, Any], ET.Element]:
    as_json = api.get(url, headers=bearer(token))
    assert as_json.status_code == 200, as_json.get_data(as_text=True)
    as_xml = api.get(url, headers={**bearer(token), "Accept": "application/xml"})
    assert as_xml.status_code == 200
    assert as_xml.mimetype == "application/xml"
    root = ET.fromstring(as_xml.data)  # raises on malformed XML
    return dict(as_json.json), root


def test_xml_special_characters_in_username_round_trip(api, auth_app, flow, web_client):
    nasty_user = make_user(auth_app, "<&>\"' o'brien & <script>", "nasty-password")
    token = str(flow.token(nasty_user, web_client)["access_token"])
    assert jwt.decode(token, options={"verify_signature": False})["username"] == nasty_user.username
    created = start(api, token)
    as_json, root = get_json_and_xml(api, "/rest/call", token)
    assert root.tag == "response"
    calls = [call_from_xml(c) for c in root.find("calls")]
    assert calls == as_json["calls"] == [created]
    as_json, root = get_json_and_xml(api, f"/rest/call?token_call={created['token_call']}", token)
    assert root.tag == "call" and call_from_xml(root) == as_json == created


def test_xml_special_characters_in_subject_and_client_round_trip(api, keys_dir, admin_token):
    """The call output carries ``subject`` and ``client_id`` from the token: make them nasty."""
    token = mint(keys_dir, sub=XML_NASTY, client_id='<app & "co">\'')
    created = start(api, token)
    assert created["subject"] == XML_NASTY
    as_json, root = get_json_and_xml(api, "/rest/call", token)
    calls = [call_from_xml(c) for c in root.find("calls")]
    assert calls == as_json["calls"] == [created]
    as_json, root = get_json_and_xml(api, f"/rest/call?token_call={created['token_call']}", token)
    assert call_from_xml(root) == as_json == created
    # the admin view echoes the subject from the URL too
    as_json, root = get_json_and_xml(api, "/admin/users/" + quote(XML_NASTY, safe=""), admin_token)
    assert root.tag == "user"
    assert root.find("subject").text == as_json["subject"] == XML_NASTY
    recent = [call_from_xml(c) for c in root.find("recent_calls")]
    assert recent == as_json["recent_calls"] == [created]


def test_xml_error_body_with_special_characters_is_well_formed(api, user_token):
    r = api.get(
        "/rest/call?token_call=" + quote(XML_NASTY, safe="") + "&format=xml",
        headers=bearer(user_token),
    )
    assert r.status_code == 404 and r.mimetype == "application/xml"
    root = ET.fromstring(r.data)
    assert root.tag == "error_response" and root.find("error").text == "not_found"


# ---------------------------------------------------------------- JSON shapes


@pytest.mark.parametrize(
    "payload",
    [
        '["+14155550123"]',
        "14155550123",
        '"+14155550123"',
        "null",
        "true",
        "",
        "{",
        '{"number": "+14155550123"',
        "{'number': '+14155550123'}",
        "NaN",
    ],
    ids=[
        "array",
        "number",
        "string",
        "null",
        "true",
        "empty",
        "truncated-1",
        "truncated-2",
        "single-quotes",
        "nan",
    ],
)
def test_json_body_that_is_not_an_object_is_400(api, call_app, user_token, seeded, payload):
    r = api.post(
        "/rest/call", data=payload, content_type="application/json", headers=bearer(user_token)
    )
    assert_error(r, 400, "invalid_request")
    r = api.put(
        "/rest/call", data=payload, content_type="application/json", headers=bearer(user_token)
    )
    assert_error(r, 400, "invalid_request")
    assert calls_snapshot(call_app) == seeded


@pytest.mark.parametrize("depth", [100, 2_000, 3_000])
@pytest.mark.parametrize("shape", ["array", "object", "in-number"])
def test_deeply_nested_json_body_is_400(
    api, call_app, user_token, admin_token, user, seeded, depth, shape
):
    if shape == "array":
        payload = "[" * depth + "]" * depth
    elif shape == "object":
        payload = '{"":' * depth + "1" + "}" * depth
    else:
        payload = '{"number":' + "[" * depth + "]" * depth + "}"
    assert len(payload.encode()) <= MAX_CONTENT_LENGTH
    # 100 levels parse (then the number is missing or not a string); thousands of levels
    # exceed the JSON decoder's recursion limit and must be a 400, not a RecursionError 500
    if depth == 100 and shape in ("object", "in-number"):
        expected = "invalid_number"
    else:
        expected = "invalid_request"
    r = api.post(
        "/rest/call", data=payload, content_type="application/json", headers=bearer(user_token)
    )
    assert_error(r, 400, expected)
    r = api.put(
        "/rest/call", data=payload, content_type="application/json", headers=bearer(user_token)
    )
    assert r.status_code in (400, 404), r.get_data(as_text=True)
    r = api.put(
        f"/admin/users/{quote(user.id, safe='')}/limit",
        data=payload,
        content_type="application/json",
        headers=bearer(admin_token),
    )
    assert_error(r, 400, "invalid_request")
    assert calls_snapshot(call_app) == seeded


def test_non_string_number_is_invalid_number(api, call_app, user_token, seeded):
    for value in (14155550123, 1.5, None, True, ["+14155550123"], {"n": "+14155550123"}):
        r = api.post("/rest/call", json={"number": value}, headers=bearer(user_token))
        assert_error(r, 400, "invalid_number")
    assert calls_snapshot(call_app) == seeded


# ---------------------------------------------------------------- content types


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        "text/html",
        "application/octet-stream",
        "application/x-www-form-urlencoded-but-not",
        "image/png",
    ],
)
def test_wrong_content_type_is_415(api, call_app, user_token, seeded, content_type):
    r = api.post(
        "/rest/call",
        data=f"number={quote(NUMBER)}",
        content_type=content_type,
        headers=bearer(user_token),
    )
    assert_error(r, 415, "unsupported_media_type")
    r = api.put(
        "/rest/call",
        data=f"token_call={seeded[1][0]}",
        content_type=content_type,
        headers=bearer(user_token),
    )
    assert_error(r, 415, "unsupported_media_type")
    assert calls_snapshot(call_app) == seeded


def test_wrong_content_type_on_admin_limit_is_415(api, admin_token, user):
    r = api.put(
        f"/admin/users/{quote(user.id, safe='')}/limit",
        data='{"max_ongoing": 5}',
        content_type="text/plain",
        headers=bearer(admin_token),
    )
    assert_error(r, 415, "unsupported_media_type")


def test_json_with_charset_parameter_is_accepted(api, user_token):
    """Not an attack, the control: a correct content type with parameters works."""
    r = api.post(
        "/rest/call",
        data=json.dumps({"number": NUMBER}),
        content_type="application/json; charset=utf-8",
        headers=bearer(user_token),
    )
    assert r.status_code == 201, r.get_data(as_text=True)


# ---------------------------------------------------------------- NUL bytes
# PostgreSQL text cannot hold U+0000: psycopg2 raises ValueError before the query is sent,
# which used to surface as a 500 on PostgreSQL (and a 404/200 on SQLite).


def test_nul_in_token_call_is_404(api, call_app, user_token, admin_token, seeded):
    ongoing = seeded[1][0]
    for bad in ("a\x00b", ongoing + "\x00", "\x00"):
        r = api.get("/rest/call?token_call=" + quote(bad, safe=""), headers=bearer(user_token))
        assert_error(r, 404, "not_found")
        r = api.put("/rest/call", data={"token_call": bad}, headers=bearer(user_token))
        assert_error(r, 404, "not_found")
        r = api.put("/rest/call", json={"token_call": bad}, headers=bearer(user_token))
        assert_error(r, 404, "not_found")
        r = api.get(f"/admin/calls/{quote(bad, safe='')}", headers=bearer(admin_token))
        assert_error(r, 404, "not_found")
        r = api.post(f"/admin/calls/{quote(bad, safe='')}/end", headers=bearer(admin_token))
        assert_error(r, 404, "not_found")
    assert calls_snapshot(call_app) == seeded


def test_nul_in_admin_subject_is_400(api, call_app, admin_token, seeded):
    for path in ("/admin/users/a%00b", "/admin/users/a%00b/calls", "/admin/users/%00"):
        r = api.get(path, headers=bearer(admin_token))
        assert_error(r, 400, "invalid_request")
    r = api.put("/admin/users/a%00b/limit", json={"max_ongoing": 1}, headers=bearer(admin_token))
    assert_error(r, 400, "invalid_request")
    assert calls_snapshot(call_app) == seeded


@pytest.mark.parametrize("claim", ["sub", "client_id"])
def test_nul_in_token_subject_or_client_is_invalid_token(api, call_app, keys_dir, seeded, claim):
    token = mint(keys_dir, **{claim: "a\x00b"})
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(token))
    assert_error(r, 401, "invalid_token")
    r = api.get("/rest/call", headers=bearer(token))
    assert_error(r, 401, "invalid_token")
    assert calls_snapshot(call_app) == seeded
