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


def _routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
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


def _run_operation(operation, token: str, max_examples: int) -> int:
    seen = {"n": 0}

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(headers={"Authorization": f"Bearer {token}"}))
    def check(case) -> None:
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        seen["n"] += 1

    check()
    return seen["n"]


def test_live_app_conforms_to_its_document(call_app, api, user_token, admin_token, user):
    """Schemathesis drives every operation with generated valid inputs (user token for /rest,
    admin token for /admin): no 5xx, only documented statuses and content types, and bodies
    matching their schemas."""
    # Some real calls (one ended) so that reads and lists have something to return.
    ended = start(api, user_token, NUMBER)
    api.put("/rest/call", data={"token_call": ended["token_call"]}, headers=bearer(user_token))
    start(api, user_token, OTHER_NUMBER)

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
    for operation in operations:
        token = admin_token if operation.path.startswith("/admin") else user_token
        assert _run_operation(operation, token, max_examples=MAX_EXAMPLES) > 0, operation.label


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
