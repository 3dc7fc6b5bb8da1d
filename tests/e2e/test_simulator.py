"""The simulator dialer as ``make run`` uses it: real processes over HTTP only.

An auth server and a call API under gunicorn (on the test's PostgreSQL and SQLite databases)
and a ``call-api simulator`` process with short ring and talk times. The simulator finds the
token endpoint in the auth server's metadata, gets a ``dialer`` token with its own client and
claims the calls a user opens. Each documented test number reaches its final state; a call
to any other number stays in-progress until the app hangs up, and the simulator learns of the
hang-up from its long poll within a second and stops that call's script (no event after it,
so no 409); SIGTERM stops the simulator cleanly, hanging up the call it still holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import AUDIENCE, Flow, make_client, make_user
from tests.e2e.servers import auth_env, call_env, free_port, run_service

pytestmark = pytest.mark.slow

RING = 0.4
TALK = 0.6
OTHER = "+14155550123"


def wait_for(what: str, check: Callable[[], Any], timeout: float, log: Callable[[], str]) -> Any:
    """``check()``'s first truthy value, polled until ``timeout`` (a deadline wait)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s\n{log()}"
        time.sleep(0.05)


def test_each_test_number_ends_as_documented_and_a_hang_up_reaches_the_dialer(
    app_with, call_app, databases, keys_dir, public_key_file
):
    auth_port = free_port()
    issuer = f"http://127.0.0.1:{auth_port}"
    # An in-process auth app on the same database and keys, with the real server's issuer:
    # it registers the clients and signs the user in (the browser flow) for the user token.
    auth_app = app_with(AUTH_ISSUER=issuer)
    user = make_user(auth_app)
    web = make_client(auth_app, "Web app")
    dialer = make_client(
        auth_app,
        "Simulator",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="dialer",
    )
    token = Flow(auth_app.test_client()).token(user, web)["access_token"]
    with call_app.app_context():
        from call_api import calls

        calls.set_limit(user.id, 10)

    env = call_env(databases.calls_url, issuer, AUDIENCE, public_key_file=str(public_key_file))
    with (
        run_service(
            "auth_server",
            auth_env(databases.auth_url, str(keys_dir), issuer, AUDIENCE),
            port=auth_port,
        ),
        run_service("call_api", env) as api,
        tempfile.NamedTemporaryFile(prefix="simulator-", suffix=".log") as log_file,
    ):
        sim_env = {
            **os.environ,
            "DIALER_CLIENT_ID": dialer.client_id,
            "DIALER_CLIENT_SECRET": str(dialer.client_secret),
            "AUTH_ISSUER": issuer,
            "CALL_API_URL": api.url,
            "SIMULATOR_RING_SECONDS": str(RING),
            "SIMULATOR_TALK_SECONDS": str(TALK),
        }
        # A short long poll (--wait 1): the call API then stops at once when the test ends
        # (gunicorn lets a request in flight finish); a hang-up still reaches the simulator
        # within the poll's 0.2 s step, whatever the wait.
        simulator = subprocess.Popen(
            [sys.executable, "-m", "call_api.cli", "simulator", "--id", "sim-e2e", "--wait", "1"],
            env=sim_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_path = Path(log_file.name)

        def log() -> str:
            return log_path.read_text(errors="replace")

        headers = {"Authorization": f"Bearer {token}"}

        def open_call(number: str, **options: int) -> str:
            r = requests.post(
                api.url + "/rest/call", data={"number": number, **options}, headers=headers
            )
            assert r.status_code == 201, r.text
            assert r.json()["state"] == "queued"
            return str(r.json()["token_call"])

        def call(token_call: str) -> dict[str, Any]:
            r = requests.get(
                api.url + "/rest/call", params={"token_call": token_call}, headers=headers
            )
            assert r.status_code == 200, r.text
            return dict(r.json())

        def final(token_call: str) -> dict[str, Any]:
            def ended() -> dict[str, Any] | None:
                body = call(token_call)
                return body if body["status"] == "ended" else None

            return dict(wait_for(f"call {token_call} ended", ended, 15, log))

        try:
            answers = open_call("+15005550006", time_limit=30)
            busy = open_call("+15005550007")
            no_answer = open_call("+15005550008", ring_timeout=1)
            fails = open_call("+15005550009")
            other = open_call(OTHER)

            body = final(answers)
            assert (body["state"], body["end_reason"]) == ("completed", "remote")
            assert body["ringing_at"] and body["answered_at"]
            body = final(busy)
            assert (body["state"], body["end_reason"], body["answered_at"]) == (
                "busy",
                "busy",
                None,
            )
            assert body["ringing_at"] is not None
            body = final(no_answer)
            assert (body["state"], body["end_reason"], body["answered_at"]) == (
                "no-answer",
                "no-answer",
                None,
            )
            body = final(fails)
            assert (body["state"], body["end_reason"], body["ringing_at"]) == (
                "failed",
                "failed",
                None,
            )

            # Any other number answers and stays in-progress until the app hangs up.
            wait_for("in-progress", lambda: call(other)["state"] == "in-progress", 10, log)
            r = requests.put(api.url + "/rest/call", data={"token_call": other}, headers=headers)
            assert r.status_code == 200, r.text
            assert (r.json()["state"], r.json()["end_reason"]) == ("completed", "hangup")
            notice = (
                f"call {other}: ended by the call API (completed, end_reason hangup): "
                "script stopped, no more events"
            )
            wait_for("the dialer learns the hang-up", lambda: notice in log(), 1.0, log)

            # The simulator said what happened, event by event, and nothing was refused.
            lines = log().splitlines()
            assert [line.split(": ", 1)[1] for line in lines if answers in line] == [
                f"call {answers} to +15005550006: claimed (claim 1)",
                f"call {answers} to +15005550006: ringing -> ringing",
                f"call {answers} to +15005550006: answered -> in-progress",
                f"call {answers} to +15005550006: hangup -> completed",
            ]
            assert [line.split(": ", 1)[1] for line in lines if fails in line] == [
                f"call {fails} to +15005550009: claimed (claim 1)",
                f"call {fails} to +15005550009: failed -> failed",
            ]
            assert [line.split(": ", 1)[1] for line in lines if other in line] == [
                f"call {other} to {OTHER}: claimed (claim 1)",
                f"call {other} to {OTHER}: ringing -> ringing",
                f"call {other} to {OTHER}: answered -> in-progress",
                notice,
            ]
            assert "refused" not in log() and "retrying" not in log()
            assert dialer.client_secret not in log()
            assert simulator.poll() is None

            # SIGTERM: the simulator hangs up the call it holds and exits cleanly.
            last = open_call(OTHER)
            wait_for("in-progress", lambda: call(last)["state"] == "in-progress", 10, log)
        finally:
            simulator.send_signal(signal.SIGTERM)
            try:
                status = simulator.wait(15)
            except subprocess.TimeoutExpired:
                simulator.kill()
                simulator.wait()
                raise
        assert status == 0, log()
        body = call(last)
        assert (body["state"], body["end_reason"]) == ("completed", "remote")
        assert log().splitlines()[-1].endswith("simulator sim-e2e: stopped")
