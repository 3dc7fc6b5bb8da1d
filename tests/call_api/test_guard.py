"""``require_token(scope)``: every protected view wears it, and its checks run in order
(token, then scope, then the response format) before the view changes anything."""

from __future__ import annotations

import pytest

from tests.call_api.helpers import NUMBER
from tests.conftest import bearer

SCOPES = {"rest": "call", "admin": "admin", "webhooks": "admin", "dialer": "dialer"}


def test_every_rest_and_admin_view_requires_its_scope(call_app):
    guarded = {}
    for rule in call_app.url_map.iter_rules():
        blueprint = rule.endpoint.partition(".")[0]
        if blueprint in SCOPES:
            view = call_app.view_functions[rule.endpoint]
            guarded[rule.endpoint] = getattr(view, "required_scope", None)
    assert guarded, "no /rest or /admin views found"
    assert guarded == {endpoint: SCOPES[endpoint.partition(".")[0]] for endpoint in guarded}


@pytest.mark.parametrize(
    "method, path, kwargs",
    [
        ("post", "/rest/call", {"data": {"number": NUMBER}}),
        ("get", "/rest/call", {}),
        ("put", "/admin/users/someone/limit", {"json": {"max_ongoing": 1}}),
    ],
)
def test_no_token_is_401_even_with_an_unacceptable_format(api, method, path, kwargs):
    r = getattr(api, method)(path + "?format=bogus", **kwargs)
    assert r.status_code == 401
    assert r.mimetype == "application/json"
    assert r.json["error"] == "invalid_request"
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="clickcall"'


def test_wrong_scope_is_403_even_with_an_unacceptable_format(api, user_token):
    r = api.put(
        "/admin/users/someone/limit?format=bogus",
        json={"max_ongoing": 1},
        headers=bearer(user_token),
    )
    assert r.status_code == 403
    assert r.json["error"] == "insufficient_scope"
    assert 'scope="admin"' in r.headers["WWW-Authenticate"]


def test_admin_unacceptable_format_is_406_and_changes_nothing(api, admin_token):
    before = api.get("/admin/users/someone", headers=bearer(admin_token)).json
    r = api.put(
        "/admin/users/someone/limit?format=bogus",
        json={"max_ongoing": 7},
        headers=bearer(admin_token),
    )
    assert r.status_code == 406
    assert api.get("/admin/users/someone", headers=bearer(admin_token)).json == before
