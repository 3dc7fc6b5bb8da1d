"""/openapi.json: a valid OpenAPI 3.1 document that describes every route, and that the live
app conforms to (schemathesis, positive data)."""

from __future__ import annotations

import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.call_api.helpers import NUMBER, OTHER_NUMBER, start
from tests.conftest import bearer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
IGNORED_METHODS = {"HEAD", "OPTIONS"}
# Examples per operation; raise it for a deeper (slower) hunt.
MAX_EXAMPLES = int(os.environ.get("CALL_API_FUZZ_EXAMPLES", "25"))


def test_openapi_document_is_valid_31(api):
    """GET /openapi.json is JSON that openapi-spec-validator accepts as OpenAPI 3.1."""
    r = api.get("/openapi.json")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    document = r.json
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_validator_would_catch_a_broken_document(api):
    """The validation above can fail: a response without a description is rejected."""
    document = api.get("/openapi.json").json
    del document["paths"]["/rest/call"]["post"]["responses"]["201"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(document)


def test_dialer_and_webhook_operations_are_specified(api, make_call_app):
    """The dialer endpoints need the dialer client's scope (an OAuth2 client-credentials
    scheme with scope dialer), the webhook admin endpoints the admin scope; a call's
    lifecycle state is an enum of the nine states, and time_limit is bounded by this
    service's CALL_MAX_DURATION."""
    document = api.get("/openapi.json").json
    flows = document["components"]["securitySchemes"]["dialerClient"]["flows"]
    assert list(flows["clientCredentials"]["scopes"]) == ["dialer"]
    for path in ("/dialer/poll", "/dialer/calls/{token_call}/events"):
        assert document["paths"][path]["post"]["security"] == [{"dialerClient": ["dialer"]}]
    for path, method in [
        ("/admin/clients/{client_id}/webhook", "put"),
        ("/admin/clients/{client_id}/webhook", "get"),
        ("/admin/clients/{client_id}/webhook", "delete"),
        ("/admin/calls/{token_call}/events", "get"),
        ("/admin/events/{event_id}/redeliver", "post"),
    ]:
        assert document["paths"][path][method]["security"] == [{"adminClient": ["admin"]}]
    schemas = document["components"]["schemas"]
    assert schemas["CallState"]["enum"] == [
        "queued",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "no-answer",
        "failed",
        "canceled",
        "expired",
    ]
    assert schemas["NewCall"]["properties"]["time_limit"]["maximum"] == 14400
    short = make_call_app(CALL_MAX_DURATION=600).test_client().get("/openapi.json").json
    assert short["components"]["schemas"]["NewCall"]["properties"]["time_limit"]["maximum"] == 600


def _routes(app) -> set[tuple[str, str]]:
    from call_api.web.session import is_page_path

    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "ui.static") or is_page_path(rule.rule):
            continue  # files, and the pages for people (HTML under /calls): not the API
        path = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - IGNORED_METHODS:
            routes.add((path, method.lower()))
    return routes


def _described(document) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in methods
    }


def test_every_route_is_described(api, call_app):
    """Each (path, method) the app serves, except static files, is in the document, and the
    document describes nothing the app does not serve."""
    document = api.get("/openapi.json").json
    routes = _routes(call_app)
    assert ("/rest/call", "post") in routes  # the rule conversion works
    assert ("/admin/users/{sub}/calls", "get") in routes
    described = _described(document)
    assert sorted(routes - described) == [], "routes missing from /openapi.json"
    assert sorted(described - routes) == [], "/openapi.json describes routes that do not exist"


def test_every_operation_documents_its_errors(api):
    """Every authenticated operation documents 401 and 403 with a WWW-Authenticate header."""
    document = api.get("/openapi.json").json
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation.get("security") == []:
                continue
            for code in ("401", "403"):
                assert "WWW-Authenticate" in operation["responses"][code]["headers"], (
                    path,
                    method,
                    code,
                )


def _run_operation(operation, token: str, max_examples: int, prepare=None) -> int:
    seen = {"n": 0}

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(headers={"Authorization": f"Bearer {token}"}))
    def check(case) -> None:
        if prepare is not None:
            prepare(case, seen["n"])
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        seen["n"] += 1

    check()
    return seen["n"]


LOOPBACK_HOOK = "http://127.0.0.1:9/clickcall-hook"


class Seeds:
    """Real objects that generated requests are pointed at on every other example, so the
    fuzzing reaches their success paths (and not only 404s): a call a dialer holds, a call's
    events, an event to redeliver, a client's webhook endpoint."""

    def __init__(self, held_call: str, event_call: str, event_id: str, client_id: str) -> None:
        self.held_call = held_call
        self.event_call = event_call
        self.event_id = event_id
        self.client_id = client_id

    def prepare(self, case, n: int) -> None:
        body = case.body if isinstance(case.body, dict) else {}
        label = f"{case.operation.method.upper()} {case.operation.path}"
        # Never a real DNS lookup: a generated URL that the SSRF check would resolve goes to
        # loopback (allowed in development) instead.
        for name in ("url", "status_callback"):
            if isinstance(body.get(name), str) and body[name]:
                body[name] = LOOPBACK_HOOK
        if label == "POST /dialer/poll":
            body["wait"] = 0  # a long poll with nothing to say would hold for up to 25 s
        if n % 2:
            return
        if label == "POST /dialer/calls/{token_call}/events":
            case.path_parameters["token_call"] = self.held_call
            body["dialer_id"] = "sim-1"
        elif label == "GET /admin/calls/{token_call}/events":
            case.path_parameters["token_call"] = self.event_call
        elif label == "POST /admin/events/{event_id}/redeliver":
            case.path_parameters["event_id"] = self.event_id
        elif case.operation.path == "/admin/clients/{client_id}/webhook":
            case.path_parameters["client_id"] = self.client_id


def _token_for(path: str, user_token: str, admin_token: str, dialer_token: str) -> str:
    if path.startswith("/admin"):
        return admin_token
    if path.startswith("/dialer"):
        return dialer_token
    return user_token


def test_live_app_conforms_to_its_document(
    call_app, api, user_token, admin_token, dialer_token, dialer, user, web_client
):
    """Schemathesis drives every operation with generated valid inputs (user token for /rest,
    admin token for /admin, a dialer client's token for /dialer): no 5xx, only documented
    statuses and content types, and bodies matching their schemas."""
    # The app's webhook URL, so that events have somewhere to go (redelivery is possible).
    r = api.put(
        f"/admin/clients/{web_client.client_id}/webhook",
        json={"url": LOOPBACK_HOOK},
        headers=bearer(admin_token),
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    # Some real calls (one ended, one held by a dialer) so that reads and lists have
    # something to return.
    ended = start(api, user_token, NUMBER)
    api.put("/rest/call", data={"token_call": ended["token_call"]}, headers=bearer(user_token))
    held = start(api, user_token, OTHER_NUMBER)
    [claimed] = dialer.claim()
    assert claimed["token_call"] == held["token_call"]
    dialer.event(held["token_call"], "ringing")
    events = api.get(f"/admin/calls/{ended['token_call']}/events", headers=bearer(admin_token))
    assert events.status_code == 200, events.get_data(as_text=True)
    seeds = Seeds(
        held["token_call"],
        ended["token_call"],
        events.json["events"][-1]["event_id"],
        web_client.client_id,
    )

    schema = schemathesis.openapi.from_wsgi("/openapi.json", call_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = sorted(f"{op.method.upper()} {op.path}" for op in operations)
    document = call_app.test_client().get("/openapi.json").json
    # Schemathesis leaves out the document's own URL; everything else must be exercised.
    assert labels == sorted(
        f"{method.upper()} {path}"
        for path, method in _described(document)
        if path != "/openapi.json"
    )
    assert "POST /dialer/poll" in labels and "PUT /admin/clients/{client_id}/webhook" in labels
    for operation in operations:
        token = _token_for(operation.path, user_token, admin_token, dialer_token)
        count = _run_operation(operation, token, MAX_EXAMPLES, seeds.prepare)
        assert count > 0, operation.label


def test_conformance_checks_can_fail(call_app, user_token):
    """The same harness reports a response that breaks the document (sanity check)."""
    from schemathesis.core.failures import FailureGroup

    schema = schemathesis.openapi.from_wsgi("/openapi.json", call_app)
    operation = schema["/rest/call"]["GET"]
    case = operation.Case(
        query={"token_call": "x"}, headers={"Authorization": f"Bearer {user_token}"}
    )
    response = case.call()
    assert response.status_code == 404
    response.status_code = 418  # undocumented
    with pytest.raises(FailureGroup):
        case.validate_response(response, checks=CHECKS)
