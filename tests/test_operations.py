"""Operational endpoints and commands: /readyz, /metrics, config show, proxies, production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import ConfigError
from tests.conftest import bearer


def test_auth_readyz_names_the_signing_key(client, keys_dir):
    from shared.keys import KeyStore

    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json == {
        "status": "ready",
        "database": "ok",
        "signing_key": KeyStore(keys_dir).current().kid,
    }


def test_call_api_readyz_with_pem_key(api):
    r = api.get("/readyz")
    assert r.status_code == 200
    assert r.json == {
        "status": "ready",
        "database": "ok",
        "keys": "loaded",
        "revocations": {"status": "disabled"},  # tests/conftest.py: no feed in-process
    }


def test_call_api_readyz_is_503_when_jwks_unreachable(databases, call_app):
    from call_api import create_app
    from tests.conftest import call_config

    app = create_app(
        {
            **call_config(databases, public_key_file=""),  # type: ignore[arg-type]
            "CALL_PUBLIC_KEY_FILE": None,
            "CALL_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
            "CALL_JWKS_TIMEOUT": 1,
        }
    )
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.json == {
        "error": "service_unavailable",
        "error_description": "No verification keys: the JWKS could not be fetched.",
    }


def test_metrics_count_tokens_calls_and_refusals(client, api, user_token, admin_client):
    def value(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                if line.split(" ")[0] == name or name.endswith("}"):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = api.get("/metrics").get_data(as_text=True)
    started = value(before, "clickcall_calls_started_total")
    refused = value(before, "clickcall_call_limit_refusals_total")
    for number in ("+14155550123", "+14155550124", "+14155550125"):
        api.post("/rest/call", data={"number": number}, headers=bearer(user_token))
    after = api.get("/metrics")
    assert after.status_code == 200
    assert after.mimetype == "text/plain"
    text = after.get_data(as_text=True)
    assert value(text, "clickcall_calls_started_total") == started + 2
    assert value(text, "clickcall_call_limit_refusals_total") == refused + 1
    assert (
        'clickcall_http_requests_total{endpoint="/rest/call",method="POST",'
        'service="call_api",status="409"}'
    ) in text
    auth_metrics = client.get("/metrics").get_data(as_text=True)
    assert 'clickcall_tokens_issued_total{grant_type="authorization_code"}' in auth_metrics


def test_metrics_show_live_calls_by_state_and_the_webhook_backlog(call_app, api, user_token):
    """Read from the database at each scrape: live calls per state, webhook events pending
    or failed, and the age of the oldest pending one (what an operator alerts on)."""
    from call_api import webhooks

    def series(text: str, prefix: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(prefix)]

    text = api.get("/metrics").get_data(as_text=True)
    assert series(text, "clickcall_calls_live{") == [
        'clickcall_calls_live{state="queued"} 0.0',
        'clickcall_calls_live{state="ringing"} 0.0',
        'clickcall_calls_live{state="in-progress"} 0.0',
    ]
    assert series(text, "clickcall_webhook_oldest_pending_seconds ") == [
        "clickcall_webhook_oldest_pending_seconds 0.0"
    ]
    first = api.post("/rest/call", data={"number": "+14155550123"}, headers=bearer(user_token))
    assert first.status_code == 201  # no webhook URL yet: its event is history only
    with call_app.app_context():
        webhooks.set_endpoint(first.json["client_id"], "http://127.0.0.1:9/hooks", call_app.config)
    r = api.post("/rest/call", data={"number": "+14155550124"}, headers=bearer(user_token))
    assert r.status_code == 201
    text = api.get("/metrics").get_data(as_text=True)
    assert 'clickcall_calls_live{state="queued"} 2.0' in text
    assert series(text, "clickcall_webhook_events{") == [
        'clickcall_webhook_events{delivery="pending"} 1.0',
        'clickcall_webhook_events{delivery="failed"} 0.0',
    ]
    [lag] = series(text, "clickcall_webhook_oldest_pending_seconds ")
    assert float(lag.split()[1]) >= 0.0
    assert 'clickcall_call_transitions_total{source="app",state="queued"}' in text


def test_config_show_masks_secrets(auth_app, call_app):
    from auth_server.cli import main as auth_cli
    from call_api.cli import main as call_cli

    out = auth_app.test_cli_runner().invoke(auth_cli, ["config", "show"])
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert shown["SECRET_KEY"] == "********"
    assert "test-secret-key" not in out.output
    assert shown["AUTH_ISSUER"] == "http://127.0.0.1:8888"
    out = call_app.test_cli_runner().invoke(call_cli, ["config", "show"])
    assert out.exit_code == 0, out.output
    assert "CALL_MAX_ONGOING_DEFAULT" in json.loads(out.output), out.output
    assert json.loads(out.output)["CALL_MAX_ONGOING_DEFAULT"] == 2


def test_config_show_hides_database_password():
    from shared.showconfig import masked

    text = masked(
        {"SQLALCHEMY_DATABASE_URI": "postgresql://u:hunter2@db/x"}, ["SQLALCHEMY_DATABASE_URI"]
    )
    assert "hunter2" not in text and "***" in text


def test_forwarded_headers_ignored_without_trusted_proxies(databases, keys_dir):
    from auth_server import create_app
    from tests.conftest import auth_config

    for hops, expected in ((0, "127.0.0.1"), (1, "203.0.113.9")):
        app = create_app(auth_config(databases, keys_dir, TRUSTED_PROXIES=hops))

        @app.get("/_whoami")
        def whoami() -> str:
            from flask import request

            return str(request.remote_addr)

        r = app.test_client().get("/_whoami", headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.get_data(as_text=True) == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "AUTH_SECRET_KEY"),
        ({"AUTH_SECRET_KEY": "s" * 40}, "AUTH_DATABASE_URL"),
        (
            {"AUTH_SECRET_KEY": "s" * 40, "AUTH_DATABASE_URL": "postgresql://db/auth"},
            "AUTH_GENERATE_KEYS",
        ),
    ],
)
def test_production_refuses_development_defaults(monkeypatch, env, variable):
    from auth_server import create_app

    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("AUTH_GENERATE_KEYS", "true")
    for name in ("AUTH_SECRET_KEY", "AUTH_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=variable):
        create_app()


def test_production_call_api_refuses_sqlite(monkeypatch):
    from call_api import create_app

    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("CALL_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="CALL_DATABASE_URL"):
        create_app()


def test_metrics_in_one_process_show_only_each_services_own_series(client, api, user_token):
    api.post("/rest/call", data={"number": "+14155550123"}, headers=bearer(user_token))
    auth_text = client.get("/metrics").get_data(as_text=True)
    call_text = api.get("/metrics").get_data(as_text=True)
    assert 'clickcall_tokens_issued_total{grant_type="authorization_code"}' in auth_text
    assert "clickcall_tokens_issued_total" not in call_text
    assert "clickcall_calls_started_total" in call_text
    assert "clickcall_calls_started_total" not in auth_text
    assert 'service="call_api"' not in auth_text and 'service="auth_server"' in auth_text
    assert 'service="auth_server"' not in call_text and 'service="call_api"' in call_text


MULTIPROCESS_SCRIPT = """
import auth_server, call_api
auth, api = auth_server.create_app(), call_api.create_app()
for app in (auth, api):
    with app.test_client() as c:
        c.get("/openapi.json" if app is api else "/.well-known/jwks.json")
        print("=====", app.import_name)
        print(c.get("/metrics").get_data(as_text=True))
"""


def test_metrics_in_multiprocess_mode_filter_the_shared_folder_by_service(tmp_path):
    """Two services pointed at one PROMETHEUS_MULTIPROC_DIR still show only their own."""
    prom = tmp_path / "prom"
    prom.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
        "CLICKCALL_VAR_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(Path(__file__).parents[1])},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    _, auth_text, call_text = result.stdout.split("===== ")
    assert auth_text.startswith("auth_server") and call_text.startswith("call_api")
    assert 'service="auth_server"' in auth_text and 'service="call_api"' not in auth_text
    assert 'service="call_api"' in call_text and 'service="auth_server"' not in call_text
    assert "clickcall_calls_started_total" in call_text
    assert "clickcall_calls_started" not in auth_text
