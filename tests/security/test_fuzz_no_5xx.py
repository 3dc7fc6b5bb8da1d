"""No 5xx, whatever the input: every endpoint of both services fuzzed with hostile Unicode and
numbers (Hypothesis), as query, form and JSON, on SQLite and PostgreSQL.

Attacks that answered 500 before: ``PUT /rest/call`` with the JSON ``{"token_call":
"\\udc80"}`` (a lone surrogate: valid JSON, not text; the database driver cannot encode it)
and ``PUT /admin/users/x/limit`` with a 4,301-digit ``max_ongoing`` (past Python's int-string
conversion limit). Both are pinned exactly below; then every route of each app — found in its
URL map, so a route added later is fuzzed too — gets requests whose parameters, path
variables and a few headers are drawn from lone surrogates, NUL, bidi and zero-width marks,
huge and non-finite numbers, ``-0``, long strings and percent-encoded junk, around a valid
request (signed-in session, CSRF token, client credentials, real codes and tokens) so the
hostile value gets past the first check. The only assertion is the point: no 5xx.

``CLICKCALL_FUZZ_EXAMPLES`` (default 20) is the number of examples per route and method.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.auth_server.helpers import get_code, pkce_params
from tests.conftest import Flow, bearer, call_config

MAX_EXAMPLES = int(os.environ.get("CLICKCALL_FUZZ_EXAMPLES", "20"))
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


# --- the two 500s of the report, exactly --------------------------------------------------


def test_lone_surrogate_in_a_json_string_is_a_400(api, call_app, user_token, admin_token):
    expected = {
        "error": "invalid_request",
        "error_description": (
            "The JSON body holds a string that is not valid Unicode (a lone surrogate such as "
            "\\udc80); send UTF-8 text."
        ),
    }
    for method, path, body, token in [
        ("PUT", "/rest/call", '{"token_call": "\\udc80"}', user_token),
        ("POST", "/rest/call", '{"number": "+1415555\\ud8000123"}', user_token),
        ("POST", "/rest/call", '{"number": "+14155550123", "\\udfff": 1}', user_token),
        ("PUT", "/admin/users/x/limit", '{"max_ongoing": 1, "n": ["\\ud83d"]}', admin_token),
        # The same code point as raw bytes (CESU-8): json.loads decodes it with surrogatepass.
        ("PUT", "/rest/call", b'{"token_call": "\xed\xb2\x80"}', user_token),
    ]:
        r = api.open(path, method=method, data=body, content_type=JSON_TYPE, headers=bearer(token))
        assert (r.status_code, r.json) == (400, expected), (path, body)
    # A surrogate pair is one real character, and fine.
    r = api.put(
        "/rest/call",
        data='{"token_call": "\\ud83d\\ude00"}',
        content_type=JSON_TYPE,
        headers=bearer(user_token),
    )
    assert r.status_code == 404


OVER_LONG = "max_ongoing must be an integer from 0 to 10000 or null."
TOO_MANY_DIGITS = "The JSON body holds a number of more than 100 digits."
NOT_FINITE = "The JSON body holds a number too large to represent."


def test_over_long_or_non_finite_numbers_are_a_400(api, admin_token):
    for body, content_type, description in [
        ("max_ongoing=" + "9" * 4301, FORM_TYPE, OVER_LONG),
        ("max_ongoing=-" + "9" * 4301, FORM_TYPE, OVER_LONG),
        ("max_ongoing=" + "9" * 19, FORM_TYPE, OVER_LONG),
        ('{"max_ongoing": ' + "9" * 4301 + "}", JSON_TYPE, TOO_MANY_DIGITS),
        ('{"max_ongoing": ' + "9" * 101 + "}", JSON_TYPE, TOO_MANY_DIGITS),
        ('{"max_ongoing": 1e309}', JSON_TYPE, NOT_FINITE),
        ('{"max_ongoing": -1e309}', JSON_TYPE, NOT_FINITE),
        ('{"max_ongoing": NaN}', JSON_TYPE, "The JSON body holds NaN, which is not a JSON number."),
        (
            '{"max_ongoing": Infinity}',
            JSON_TYPE,
            "The JSON body holds Infinity, which is not a JSON number.",
        ),
    ]:
        r = api.put(
            "/admin/users/x/limit",
            data=body,
            content_type=content_type,
            headers=bearer(admin_token),
        )
        assert (r.status_code, r.json) == (
            400,
            {"error": "invalid_request", "error_description": description},
        ), body[:40]
    r = api.get("/admin/users/x", headers=bearer(admin_token))
    assert r.json["limit_source"] == "default"  # nothing was set


def test_numbers_that_mean_something_still_work(api, admin_token):
    for body, content_type, limit in [
        ("max_ongoing=%2B7", FORM_TYPE, 7),
        ("max_ongoing=+%206+", FORM_TYPE, 6),
        ('{"max_ongoing": -0}', JSON_TYPE, 0),
        ('{"max_ongoing": ' + "0" * 99 + "5}", JSON_TYPE, None),  # leading zeros: not JSON
    ]:
        r = api.put(
            "/admin/users/x/limit",
            data=body,
            content_type=content_type,
            headers=bearer(admin_token),
        )
        if limit is None:
            assert (r.status_code, r.json["error_description"]) == (
                400,
                "The body must be a JSON object.",
            )
        else:
            assert (r.status_code, r.json["max_ongoing"]) == (200, limit), body
    r = api.get("/admin/users/x/calls?page=" + "9" * 4301, headers=bearer(admin_token))
    assert (r.status_code, r.json["error_description"]) == (400, "'page' must be an integer.")


# --- hostile values -------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """Sent verbatim: already percent-encoded in a query or form, a literal in JSON."""

    text: str


HOSTILE_TEXT = [
    "\udc80",
    "\ud800",
    "a\udfffb",
    "\x00",
    "a\x00b",
    "\u202e\u2066evil\u2069",  # right-to-left override, isolates
    "\u200b\u200c\u200d\ufeff",  # zero-width and BOM
    "\uffff\U0010ffff",
    "e\u0301" * 40,
    "\U0001f642日本",
    "\r\n\t\x0b\x1b[31m",
    " ",
    "",
    "+",
    "%",
    "../../etc/passwd",
    "'\";--",
    "<script>alert(1)</script>",
    "x" * 5000,
    "\u00e9" * 2000,
]
HOSTILE_NUMBERS = [
    "9" * 4301,
    "-" + "9" * 4301,
    "1e309",
    "-1e309",
    "-0",
    "-1",
    "0",
    "NaN",
    "Infinity",
    "1_000",
    "\u0663",  # Arabic-Indic 3
    "\u00b2",
    " 5 ",
    "0x10",
    "9223372036854775808",
    "-9223372036854775809",
    "1.5",
    "1e3",
]
RAW = [
    Raw("%ED%B2%80"),  # a surrogate, CESU-8 encoded
    Raw("%ED%A0%80%ED%B0%80"),
    Raw("%FF%FE"),
    Raw("%C0%80"),  # overlong NUL
    Raw("%00"),
    Raw("%E2%80%AE"),
    Raw("%zz"),
    Raw("%"),
    Raw("%25%32%35"),
]
RAW_JSON = [
    Raw("9" * 4301),
    Raw("-" + "9" * 4301),
    Raw("1e309"),
    Raw("-0"),
    Raw("NaN"),
    Raw("-Infinity"),
    Raw("[" * 3000 + "]" * 3000),
    Raw('"\\ud800"'),
    Raw('"\\u0000"'),
]

any_character = st.one_of(st.characters(), st.characters(categories=["Cs"]))


def text_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(HOSTILE_TEXT + HOSTILE_NUMBERS + RAW),
        st.text(any_character, max_size=30),
        st.integers(-(10**30), 10**30).map(str),
    )


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        text_values(),
        st.sampled_from(RAW_JSON),
        st.integers(-(10**40), 10**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
    )
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=3),
        st.dictionaries(st.text(any_character, max_size=5), scalars, max_size=3),
    )


def quote_any(text: str) -> str:
    """Percent-encoding of any string, lone surrogates included (as their CESU-8 bytes)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def form_part(value: Any) -> str:
    return value.text if isinstance(value, Raw) else quote_any(str(value))


def to_json(value: Any) -> str:
    """JSON text; strings with ``ensure_ascii`` (a lone surrogate becomes ``\\udc80``)."""
    if isinstance(value, Raw):
        return value.text if not value.text.startswith("%") else json.dumps(value.text)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def header_safe(value: Any) -> str:
    """A header value as a client could send it (latin-1, no line breaks)."""
    text = value.text if isinstance(value, Raw) else str(value)
    return re.sub(r"[\r\n]", "", text.encode("latin-1", "ignore").decode("latin-1"))[:2000]


# --- requests -------------------------------------------------------------------------------


@dataclass
class Case:
    """A valid request to one route, whose parameters the fuzzer spoils."""

    method: str
    path: str  # as in the URL map: "<path:sub>" for a path variable
    names: tuple[str, ...]
    base: dict[str, Any] = field(default_factory=dict)  # a callable is called at each draw
    headers: dict[str, str] = field(default_factory=dict)
    # The valid Authorization header first, then others; the fuzzer adds none and garbage.
    auths: tuple[dict[str, str], ...] = ()
    probe_names: tuple[str, ...] | None = None  # the names ``WORST`` goes in (default: all)


@dataclass
class Sent:
    method: str
    url: str
    body: str | None
    content_type: str | None
    headers: dict[str, str]

    def __str__(self) -> str:
        body = None if self.body is None else self.body[:400]
        return f"{self.method} {self.url[:400]} {self.content_type} {body!r} {self.headers}"


# For a route without a case here (one added later): names such routes tend to take.
GENERIC_NAMES = ("after", "since", "cursor", "limit", "page", "id", "format", "token", "x")
PATH_VARIABLE = re.compile(r"<(?:[a-z_]+:)?([a-z_]+)>")
# The values that broke something once, tried for every parameter and path variable of every
# route, in every transport, before Hypothesis explores further.
WORST = ["\udc80", "a\x00b", "9" * 4301, "1e309", "\u202e", "x" * 5000]
WORST_JSON = ["\udc80", {"\ud800": ["\udfff"]}, "a\x00b", Raw("9" * 4301), Raw("1e309"), 10**100]


def transports(case: Case) -> list[str]:
    return ["query"] if case.method == "GET" else ["form", "json", "query"]


def build(
    case: Case,
    transport: str,
    values: dict[str, Any],
    path_values: dict[str, Any],
    headers: dict[str, str],
    twice: Any = None,
) -> Sent:
    """The request: ``values`` in ``transport``, ``path_values`` in the path (URL-encoded)."""
    pairs = list(values.items())
    if twice is not None and pairs:
        pairs.append((pairs[0][0], twice))  # a parameter sent twice
    path = case.path
    for found in PATH_VARIABLE.finditer(case.path):
        path = path.replace(found[0], form_part(path_values.get(found[1], "v")) or "%20")
    query = "&".join(f"{quote_any(k)}={form_part(v)}" for k, v in pairs)
    if transport == "query":
        return Sent(case.method, path + ("?" + query if query else ""), None, None, headers)
    if transport == "form":
        return Sent(case.method, path, query, FORM_TYPE, headers)
    body = "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in pairs) + "}"
    return Sent(case.method, path, body, JSON_TYPE, headers)


def base_values(case: Case) -> dict[str, Any]:
    return {k: v() if callable(v) else v for k, v in case.base.items()}


def worst_requests(case: Case) -> list[Sent]:
    """Each ``WORST`` value in each parameter (one at a time) and path variable, with the
    case's valid authentication."""
    headers = {**case.headers, **(case.auths[0] if case.auths else {})}
    sent = []
    for transport in transports(case)[:2]:  # the body's two encodings, or the query
        for name in case.probe_names or case.names:
            for value in WORST_JSON if transport == "json" else WORST:
                values = {**base_values(case), name: value}
                sent.append(build(case, transport, values, {}, headers))
    for variable in PATH_VARIABLE.findall(case.path):
        for value in WORST:
            sent.append(build(case, "query", {}, {variable: value}, headers))
    return sent


@st.composite
def hostile_request(draw: st.DrawFn, case: Case) -> Sent:
    transport = draw(st.sampled_from(transports(case)))
    values = base_values(case)
    spoiled = draw(st.lists(st.sampled_from([*case.names, "x"]), min_size=1, max_size=3))
    for name in spoiled:
        values[name] = draw(json_values() if transport == "json" else text_values())
    for name in draw(st.lists(st.sampled_from(sorted(values) or ["x"]), max_size=1)):
        values.pop(name, None)  # sometimes a required one is missing
    twice = draw(text_values()) if transport != "json" and draw(st.integers(0, 4)) == 0 else None
    path_values = {v: draw(text_values()) for v in PATH_VARIABLE.findall(case.path)}
    headers = dict(case.headers)
    if case.auths:  # mostly the valid authentication, to get past it
        choice = draw(st.integers(0, 9))
        if choice < 7:
            headers.update(case.auths[0])
        elif choice == 7:
            headers.update(draw(st.sampled_from(case.auths)))
        elif choice == 8:
            raw = str(draw(text_values())).encode("utf-8", "surrogatepass")
            headers["Authorization"] = "Basic " + base64.b64encode(raw + b":" + raw).decode()
    for name in draw(
        st.lists(st.sampled_from(["Idempotency-Key", "Accept", "X-Request-ID"]), max_size=1)
    ):
        headers[name] = header_safe(draw(text_values()))
    sent = build(case, transport, values, path_values, headers, twice)
    if transport == "json" and draw(st.integers(0, 5)) == 0:
        sent.body = to_json(draw(json_values()))  # not even an object
    return sent


def send(client: FlaskClient, sent: Sent) -> None:
    r = client.open(
        sent.url,
        method=sent.method,
        data=sent.body,
        content_type=sent.content_type,
        headers=sent.headers,
    )
    assert r.status_code < 500, f"{r.status_code} for {sent}: {r.get_data()[:300]!r}"


def fuzz(app: Flask, cases: list[Case], client: FlaskClient, last: tuple[str, ...] = ()) -> int:
    """Every route of ``app``: its ``cases``, or a generic one: the ``WORST`` values, then
    ``MAX_EXAMPLES`` drawn by Hypothesis. Routes in ``last`` (signing out) run last."""
    pending = list(cases)
    routes: list[Case] = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            mine = [c for c in pending if (c.method, c.path) == (method, rule.rule)]
            generic = Case(method, rule.rule, GENERIC_NAMES, probe_names=("after", "page", "x"))
            routes.extend(mine or [generic])
            pending = [c for c in pending if c not in mine]
    assert not pending, f"cases for routes the app does not have: {pending}"
    routes.sort(key=lambda c: c.path in last)
    for case in routes:
        for sent in worst_requests(case):
            send(client, sent)

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(sent=hostile_request(case))
        def check(sent: Sent) -> None:
            send(client, sent)

        check()
    return len(routes)


# --- the auth server ----------------------------------------------------------------------

OAUTH = ("response_type", "client_id", "redirect_uri", "scope", "state")
PKCE = ("code_challenge", "code_challenge_method")


def test_auth_server_never_answers_5xx(auth_app, user, web_client, admin_client):
    flow = Flow(auth_app.test_client())
    tokens = flow.token(user, web_client)  # signed in and consented: codes flow at once
    verifier, params = pkce_params(web_client)
    code = get_code(flow.client, user, params)
    auths = (web_client.basic(), admin_client.basic())
    token_names = (
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "scope",
        "client_id",
        "client_secret",
    )
    introspection = ("token", "token_type_hint", "client_id", "client_secret")
    login = {"username": user.username, "password": user.password, "csrf_token": flow.csrf}
    cases = [
        Case("GET", "/oauth/auth", OAUTH + PKCE + ("nonce", "prompt"), params),
        Case("GET", "/auth/login", OAUTH + PKCE, params),
        Case("POST", "/auth/login", OAUTH + PKCE + tuple(login), {**params, **login}),
        Case("GET", "/auth/grant", OAUTH + PKCE, params),
        Case(
            "POST",
            "/auth/grant",
            OAUTH + PKCE + ("grant", "csrf_token"),
            {**params, "grant": "true", "csrf_token": flow.csrf},
        ),
        Case("POST", "/auth/logout", OAUTH + ("csrf_token",), {"csrf_token": flow.csrf}),
        Case(
            "POST",
            "/oauth/token",
            token_names,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": web_client.redirect_uris[0],
                "code_verifier": verifier,
            },
            auths=auths,
        ),
        Case(
            "POST",
            "/oauth/token",
            token_names,
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auths=auths,
        ),
        Case(
            "POST",
            "/oauth/token",
            token_names,
            {"grant_type": "client_credentials", "scope": "admin"},
            auths=auths,
        ),
        Case(
            "POST", "/oauth/revoke", introspection, {"token": tokens["access_token"]}, auths=auths
        ),
        Case(
            "POST",
            "/oauth/introspect",
            introspection,
            {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
            auths=auths,
        ),
        Case("GET", "/test", ("code", "state", "error", "error_description", "access_token")),
    ]
    last = ("/auth/login", "/auth/logout")  # they end the session the others run in
    assert fuzz(auth_app, cases, flow.client, last) >= 16


# --- the call API -------------------------------------------------------------------------


def test_call_api_never_answers_5xx(
    auth_app, call_app, user, user_token, admin_token, databases, public_key_file
):
    """Every route, the pages' (``/calls``) included: their client is configured and the
    fuzzing browser signed in, so their views run rather than only the sign-in redirect."""
    from call_api import create_app
    from tests.call_api.web_helpers import Pages, forward_to, pages_config, register_pages_client

    pages = pages_config(register_pages_client(auth_app))
    app = create_app(call_config(databases, public_key_file, **pages))
    forward_to(app, auth_app)
    browser = Pages(app, auth_app)
    browser.sign_in(user)
    api = browser.calls
    created = api.post("/rest/call", data={"number": "+14155550123"}, headers=bearer(user_token))
    token_call = created.json["token_call"]
    user_auths = (
        {"Authorization": f"Bearer {user_token}"},
        {"Authorization": f"Bearer {admin_token}"},
    )
    admin_auths = tuple(reversed(user_auths))
    cases = [
        Case(
            "POST",
            "/rest/call",
            ("number", "status_callback", "access_token"),
            {"number": "+14155550124"},
            auths=user_auths,
        ),
        Case(
            "PUT",
            "/rest/call",
            ("token_call", "access_token"),
            {"token_call": token_call},
            auths=user_auths,
        ),
        Case(
            "GET",
            "/rest/call",
            ("token_call", "format", "access_token"),
            {"token_call": token_call},
            auths=user_auths,
        ),
        Case("GET", "/admin/users/<path:sub>", ("format",), auths=admin_auths),
        Case(
            "GET",
            "/admin/users/<path:sub>/calls",
            ("status", "page", "per_page", "format"),
            auths=admin_auths,
        ),
        Case(
            "PUT",
            "/admin/users/<path:sub>/limit",
            ("max_ongoing",),
            {"max_ongoing": "3"},
            auths=admin_auths,
        ),
        Case("GET", "/admin/calls/<token_call>", ("format",), auths=admin_auths),
        Case("POST", "/admin/calls/<token_call>/end", ("format",), auths=admin_auths),
    ]
    try:
        assert fuzz(app, cases, api, last=("/calls/logout",)) >= 12
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].session.remove()
            app.extensions["sqlalchemy"].engine.dispose()
