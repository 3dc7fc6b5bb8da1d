"""``/metrics`` behind a bearer token when ``METRICS_TOKEN`` is set, on both services.

Attack: ``/metrics`` answered anyone who reached the port (request counts per endpoint and
status, token issuance, limit refusals: a picture of the traffic). With ``METRICS_TOKEN`` set
it needs ``Authorization: Bearer <METRICS_TOKEN>``, compared in constant time; anything else
is a 401 with an RFC 6750 challenge. Unset, it stays open (keep it off the public proxy), and
``config show`` never prints the token.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import auth_config, call_config

TOKEN = "metrics-" + "k" * 32
MISSING = {
    "error": "invalid_request",
    "error_description": "The metrics need 'Authorization: Bearer <METRICS_TOKEN>'.",
}
WRONG = {"error": "invalid_token", "error_description": "The metrics token is wrong."}


@pytest.fixture(params=["auth_server", "call_api"])
def protected(request, auth_app, call_app, databases, keys_dir, public_key_file):
    """Each service, built with METRICS_TOKEN set (on the already prepared databases)."""
    if request.param == "auth_server":
        from auth_server import create_app

        app = create_app(auth_config(databases, keys_dir, METRICS_TOKEN=TOKEN))
    else:
        from call_api import create_app

        app = create_app(call_config(databases, public_key_file, METRICS_TOKEN=TOKEN))
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.mark.parametrize(
    ("authorization", "expected", "challenge"),
    [
        (None, MISSING, 'Bearer realm="metrics"'),
        (f"Bearer {TOKEN}x", WRONG, 'Bearer realm="metrics", error="invalid_token"'),
        (f"Bearer {TOKEN[:-1]}", WRONG, 'Bearer realm="metrics", error="invalid_token"'),
        ("Bearer ", WRONG, 'Bearer realm="metrics", error="invalid_token"'),
        (f"Basic {TOKEN}", WRONG, 'Bearer realm="metrics", error="invalid_token"'),
        ("Bearer m\u00e9trics", WRONG, 'Bearer realm="metrics", error="invalid_token"'),
    ],
    ids=["none", "longer", "shorter", "empty", "basic", "latin-1"],
)
def test_metrics_token_is_required_when_set(protected, authorization, expected, challenge):
    headers = {} if authorization is None else {"Authorization": authorization}
    r = protected.test_client().get("/metrics", headers=headers)
    assert (r.status_code, r.json) == (401, expected)
    assert r.headers["WWW-Authenticate"] == challenge
    assert b"clickcall_http_requests_total" not in r.data


def test_metrics_with_the_token(protected):
    client = protected.test_client()
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    assert "clickcall_http_requests_total" in r.get_data(as_text=True)
    r = client.get("/metrics", headers={"Authorization": f"bearer  {TOKEN} "})  # RFC 7235 §2.1
    assert r.status_code == 200


def test_metrics_stay_open_without_the_setting(client, api):
    for app_client in (client, api):
        r = app_client.get("/metrics")
        assert r.status_code == 200
        assert "clickcall_http_requests_total" in r.get_data(as_text=True)


def test_config_show_masks_the_metrics_token(protected):
    from auth_server.cli import main as auth_cli
    from call_api.cli import main as call_cli

    main = auth_cli if protected.name == "auth_server" else call_cli
    out = protected.test_cli_runner().invoke(main, ["config", "show"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["METRICS_TOKEN"] == "********"
    assert TOKEN not in out.output
