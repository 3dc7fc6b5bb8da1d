"""Logs of a full flow through real processes hold one JSON line per request with a request
id, and never a password, client secret, code, access token or refresh token."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import AUDIENCE, make_client, make_user, pkce_pair
from tests.e2e.servers import auth_env, call_env, free_port, run_service

pytestmark = pytest.mark.slow


def test_full_flow_logs_no_secret(auth_app, call_app, databases, keys_dir, public_key_file):
    if databases.backend != "sqlite":
        pytest.skip("logging does not depend on the database; one backend is enough")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    redirect = f"http://127.0.0.1:{port}/test"
    user = make_user(auth_app, "logged-user", "Pa55word-never-logged")
    app = make_client(auth_app, "Log app", redirect_uris=[redirect])
    env = auth_env(databases.auth_url, str(keys_dir), issuer, AUDIENCE)
    call = call_env(databases.calls_url, issuer, AUDIENCE, public_key_file=str(public_key_file))
    with run_service("auth_server", env, port=port) as auth, run_service("call_api", call) as api:
        browser = requests.Session()
        verifier, challenge = pkce_pair()
        params = {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": redirect,
            "scope": "call",
            "state": "state-value-42",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        json_accept = {"Accept": "application/json"}
        csrf = browser.get(f"{auth.url}/auth/login", params=params, headers=json_accept).json()[
            "csrf_token"
        ]
        r = browser.post(
            f"{auth.url}/auth/login",
            data={
                **params,
                "username": user.username,
                "password": user.password,
                "csrf_token": csrf,
            },
            allow_redirects=False,
        )
        assert r.status_code == 303
        csrf = browser.get(f"{auth.url}/auth/grant", params=params, headers=json_accept).json()[
            "csrf_token"
        ]
        r = browser.post(
            f"{auth.url}/auth/grant",
            data={**params, "grant": "true", "csrf_token": csrf},
            allow_redirects=False,
        )
        code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
        browser.get(r.headers["Location"])  # the /test page, with the code in its query
        tokens = requests.post(
            f"{auth.url}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "code_verifier": verifier,
            },
            auth=(app.client_id, app.client_secret),
            timeout=10,
        ).json()
        access, refresh = tokens["access_token"], tokens["refresh_token"]
        requests.post(
            f"{auth.url}/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh},
            auth=(app.client_id, app.client_secret),
            timeout=10,
        )
        # The original's query-string token, and a request id passed through.
        r = requests.get(
            f"{api.url}/rest/call",
            params={"access_token": access},
            headers={"X-Request-ID": "trace-abc-123"},
            timeout=10,
        )
        assert r.status_code == 200 and r.headers["X-Request-ID"] == "trace-abc-123"
        assert r.headers["Cache-Control"] == "no-store"
        requests.post(
            f"{api.url}/rest/call",
            data={"number": "+14155550123"},
            headers={"Authorization": f"Bearer {access}"},
            timeout=10,
        )
        logs = auth.log() + api.log()

    secrets = {
        "password": user.password,
        "client secret": app.client_secret,
        "code": code,
        "code verifier": verifier,
        "access token": access,
        "refresh token": refresh,
        "access token signature": access.rsplit(".", 1)[1],
    }
    for name, value in secrets.items():
        assert value not in logs, f"the {name} appears in the logs"
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    requests_logged = [line for line in lines if line.get("event") == "request"]
    assert len(requests_logged) >= 8
    assert all(re.fullmatch(r"[\w.:-]+", line["request_id"]) for line in requests_logged)
    assert any(line["request_id"] == "trace-abc-123" for line in requests_logged)
    assert all("?" not in line["path"] for line in requests_logged)
    call_lines = [line for line in requests_logged if line["path"] == "/rest/call"]
    assert {line["client_id"] for line in call_lines} == {app.client_id}
