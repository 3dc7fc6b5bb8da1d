"""Signed status webhooks: the admin API for endpoints and events, and delivery to a real
HTTP receiver (signatures, retries, order per call, redirects, redelivery), the CLI and the
development receiver. The worker runs in-process (``call_api.worker.Worker``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.call_api.helpers import NUMBER, good_claims
from tests.conftest import bearer

SECRET_RE = re.compile(r"^whsec_[A-Za-z0-9+/]{32}$")
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
APP = "app-1"


# --- a real receiving HTTP server --------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    status: int  # what the receiver answered

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receiver:
    """A ThreadingHTTPServer on 127.0.0.1 that records every request. ``answer(received,
    earlier)`` chooses the status (default 204); ``delay`` holds each response open."""

    def __init__(
        self,
        answer: Callable[[Received, list[Received]], int] | None = None,
        delay: float = 0.0,
        location: str | None = None,
    ) -> None:
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.answer = answer or (lambda _r, _earlier: 204)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                item = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, 0)
                with receiver.lock:
                    item.status = receiver.answer(item, list(receiver.requests))
                    receiver.requests.append(item)
                if delay:
                    time.sleep(delay)
                self.send_response(item.status)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST  # noqa: N815 (a followed redirect would arrive as a GET)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def _make(*args: Any, **kwargs: Any) -> Receiver:
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield _make
    for r in made:
        r.close()


# --- helpers through the HTTP interface --------------------------------------------------


@pytest.fixture
def admin(forge: Callable[..., str]) -> dict[str, str]:
    token = forge(good_claims(scope="admin", sub="ops", client_id="ops", username=None))
    return bearer(token)


@pytest.fixture
def app_token(forge: Callable[..., str]) -> Callable[..., str]:
    """A person's ``call`` token issued to ``client_id`` (a new person each time)."""

    def _token(client_id: str = APP) -> str:
        return forge(good_claims(client_id=client_id))

    return _token


def register(api: FlaskClient, admin: dict[str, str], url: str | None, client: str = APP) -> str:
    r = api.put(f"/admin/clients/{client}/webhook", json={"url": url}, headers=admin)
    assert r.status_code in (200, 201), r.get_data(as_text=True)
    return str(r.json["secret"])


def start_call(api: FlaskClient, token: str, **extra: Any) -> dict[str, Any]:
    r = api.post("/rest/call", json={"number": NUMBER, **extra}, headers=bearer(token))
    assert r.status_code == 201, r.get_data(as_text=True)
    return dict(r.json)


def hang_up(api: FlaskClient, token: str, call: dict[str, Any]) -> dict[str, Any]:
    r = api.put("/rest/call", json={"token_call": call["token_call"]}, headers=bearer(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    return dict(r.json)


def events(api: FlaskClient, admin: dict[str, str], call: dict[str, Any]) -> list[dict]:
    r = api.get(f"/admin/calls/{call['token_call']}/events", headers=admin)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["token_call"] == call["token_call"]
    return list(r.json["events"])


def run_worker(app: Flask, worker_id: str = "w-test") -> int:
    """Deliver what is due now (``call-api worker --once`` in-process)."""
    from call_api.worker import Worker

    with app.app_context():
        worker = Worker(app, worker_id)
        try:
            return worker.run_once()
        finally:
            worker.close()
            app.extensions["sqlalchemy"].session.remove()


def run_until(app: Flask, done: Callable[[], bool], deadline: float = 10.0) -> None:
    """Run the worker's rounds until ``done()`` (retries come due after tiny backoffs)."""
    end = time.monotonic() + deadline
    while not done():
        assert time.monotonic() < end, "not done within the deadline"
        run_worker(app)
        time.sleep(0.02)


@pytest.fixture
def quick_app(make_call_app: Callable[..., Flask]) -> Flask:
    """Retries within tens of milliseconds; calls without a per-user limit in the way."""
    return make_call_app(
        CALL_WEBHOOK_BACKOFF_BASE=0.02,
        CALL_WEBHOOK_BACKOFF_MAX=0.05,
        CALL_WEBHOOK_TIMEOUT=2,
        CALL_WEBHOOK_LEASE_SECONDS=10,
        CALL_MAX_ONGOING_DEFAULT=100,
    )


# --- endpoints through the admin API -----------------------------------------------------


def test_register_show_update_rotate_delete(api, admin):
    """PUT creates (201, the secret shown once), GET never shows it, PUT updates (200, no
    secret), rotate_secret issues a new one, DELETE forgets it (then 404)."""
    url = "/admin/clients/app-1/webhook"
    r = api.put(url, json={"url": "http://127.0.0.1:9/a"}, headers=admin)
    assert r.status_code == 201
    created = r.json
    assert SECRET_RE.match(created["secret"])
    assert ISO_RE.match(created["created_at"]) and created["updated_at"] == created["created_at"]
    assert created == {
        "client_id": "app-1",
        "url": "http://127.0.0.1:9/a",
        "secret": created["secret"],
        "created_at": created["created_at"],
        "updated_at": created["created_at"],
    }
    r = api.get(url, headers=admin)
    assert (r.status_code, r.json) == (200, {**created, "secret": None})

    r = api.put(url, json={"url": "http://127.0.0.1:9/b", "rotate_secret": False}, headers=admin)
    assert r.status_code == 200
    assert r.json == {
        **created,
        "url": "http://127.0.0.1:9/b",
        "secret": None,
        "updated_at": r.json["updated_at"],
    }
    r = api.put(url, json={"url": None, "rotate_secret": True}, headers=admin)
    assert r.status_code == 200
    assert SECRET_RE.match(r.json["secret"]) and r.json["secret"] != created["secret"]
    assert r.json["url"] is None

    assert api.delete(url, headers=admin).status_code == 204
    not_found = {"error": "not_found", "error_description": "This client has no webhook endpoint."}
    r = api.get(url, headers=admin)
    assert (r.status_code, r.json) == (404, not_found)
    r = api.delete(url, headers=admin)
    assert (r.status_code, r.json) == (404, not_found)


@pytest.mark.parametrize(
    "payload, description",
    [
        ({}, "The 'url' parameter is required (a URL, or null for none)."),
        ({"url": 5}, "'url' must be a string or null."),
        ({"url": "ftp://example.com/"}, "The webhook URL must be an http:// or https:// URL."),
        (
            {"url": "http://u:p@127.0.0.1/"},
            "The webhook URL must not contain a user name or password.",
        ),
        (
            {"url": "http://127.0.0.1/", "rotate_secret": "yes"},
            "'rotate_secret' must be true or false.",
        ),
    ],
)
def test_register_refuses_bad_input(api, admin, payload, description):
    r = api.put("/admin/clients/app-1/webhook", json=payload, headers=admin)
    assert (r.status_code, r.json) == (
        400,
        {"error": "invalid_request", "error_description": description},
    )
    assert api.get("/admin/clients/app-1/webhook", headers=admin).status_code == 404


def test_webhook_views_need_the_admin_scope(call_app, api, app_token):
    """Every view of the blueprint wears require_token("admin"); a call token gets 403."""
    views = [
        call_app.view_functions[rule.endpoint]
        for rule in call_app.url_map.iter_rules()
        if rule.endpoint.startswith("webhooks.")
    ]
    assert len(views) == 5
    assert {getattr(v, "required_scope", None) for v in views} == {"admin"}
    r = api.get("/admin/clients/app-1/webhook", headers=bearer(app_token()))
    assert (r.status_code, r.json["error"]) == (403, "insufficient_scope")
    r = api.get("/admin/clients/app-1/webhook")
    assert r.status_code == 401


def test_events_of_an_unknown_call_are_404(api, admin):
    r = api.get("/admin/calls/nope/events", headers=admin)
    assert (r.status_code, r.json) == (
        404,
        {"error": "not_found", "error_description": "No such call."},
    )


# --- delivery ----------------------------------------------------------------------------


def test_delivery_is_signed_per_standard_webhooks(call_app, api, admin, app_token, receiver):
    """Each transition arrives as a POST of the stored payload with webhook-id/-timestamp/
    -signature headers that standardwebhooks verifies with the client's secret; a tampered
    body, signature or another secret does not verify."""
    secret = register(api, admin, receiver.url())
    token = app_token()
    call = start_call(api, token)
    ended = hang_up(api, token, call)
    before = events(api, admin, call)
    assert [e["delivery"] for e in before] == ["pending", "pending"]

    assert run_worker(call_app) == 2
    assert [r.path for r in receiver.requests] == ["/hooks", "/hooks"]
    assert receiver.ids() == [e["event_id"] for e in before]
    for received, event, data in zip(receiver.requests, before, [call, ended], strict=True):
        headers = received.headers
        assert headers["content-type"] == "application/json"
        assert headers["host"] == f"127.0.0.1:{receiver.port}"
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", headers["webhook-signature"])
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300
        assert Webhook(secret).verify(received.body, headers) == event["payload"]
        assert event["payload"] == {
            "type": event["type"],
            "timestamp": event["created_at"],
            "data": data,
        }
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(received.body.replace(b"+1415", b"+1416"), headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(
                received.body, {**headers, "webhook-signature": "v1," + "A" * 43 + "="}
            )
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "B" * 32).verify(received.body, headers)
    after = events(api, admin, call)
    assert [e["type"] for e in after] == ["call.queued", "call.canceled"]
    for event in after:
        assert event["delivery"] == "delivered"
        assert (event["attempts"], event["last_status"], event["last_error"]) == (1, 204, None)
        assert event["next_attempt_at"] is None and ISO_RE.match(event["delivered_at"])
        [attempt] = event["attempt_log"]
        assert ISO_RE.match(attempt["attempted_at"])
        assert attempt == {
            "attempted_at": attempt["attempted_at"],
            "worker": "w-test",
            "status_code": 204,
            "error": None,
            "duration_ms": attempt["duration_ms"],
        }
    assert run_worker(call_app) == 0  # nothing is sent twice


def test_500_then_200_is_delivered_with_two_attempts(quick_app, admin, app_token, make_receiver):
    receiver = make_receiver(lambda r, earlier: 500 if not earlier else 200)
    api = quick_app.test_client()
    register(api, admin, receiver.url())
    call = start_call(api, app_token())
    run_until(quick_app, lambda: len(receiver.requests) == 2)
    [event] = events(api, admin, call)
    assert receiver.ids() == [event["event_id"]] * 2
    assert (event["delivery"], event["attempts"], event["last_status"]) == ("delivered", 2, 200)
    assert [(a["status_code"], a["error"]) for a in event["attempt_log"]] == [
        (500, "HTTP 500"),
        (200, None),
    ]


def test_order_per_call_holds_under_retries(quick_app, admin, app_token, make_receiver):
    """Every call's first event fails once: its second event (already written) waits until
    the first is delivered, while other calls go on."""

    def answer(r: Received, earlier: list[Received]) -> int:
        first_try = r.headers["webhook-id"] not in {e.headers["webhook-id"] for e in earlier}
        return 500 if r.event["type"] == "call.queued" and first_try else 200

    receiver = make_receiver(answer)
    api = quick_app.test_client()
    register(api, admin, receiver.url())
    calls = []
    for _ in range(3):
        token = app_token()
        calls.append(hang_up(api, token, start_call(api, token)))
    run_until(quick_app, lambda: len(receiver.requests) == 9)
    for call in calls:
        seen = [
            (r.event["type"], r.status)
            for r in receiver.requests
            if r.event["data"]["token_call"] == call["token_call"]
        ]
        assert seen == [("call.queued", 500), ("call.queued", 200), ("call.canceled", 200)]
        assert [e["delivery"] for e in events(api, admin, call)] == ["delivered", "delivered"]


def test_a_redirect_is_not_followed(call_app, api, admin, app_token, make_receiver):
    """A 302 is a failed attempt (retried later), and its Location is never requested."""
    receiver = make_receiver(lambda r, e: 302, location="/elsewhere")
    register(api, admin, receiver.url())
    call = start_call(api, app_token())
    assert run_worker(call_app) == 1
    assert [r.path for r in receiver.requests] == ["/hooks"]
    [event] = events(api, admin, call)
    assert (event["delivery"], event["attempts"], event["last_status"], event["last_error"]) == (
        "pending",
        1,
        302,
        "HTTP 302: redirects are not followed",
    )
    assert event["next_attempt_at"] is not None


def test_redeliver(call_app, api, admin, app_token, receiver):
    """A delivered event sent again: 202 with the event pending, due now, attempts 0 and
    its earlier attempt kept; the worker then sends it again with the same webhook-id."""
    register(api, admin, receiver.url())
    call = start_call(api, app_token())
    run_worker(call_app)
    [delivered] = events(api, admin, call)
    r = api.post(f"/admin/events/{delivered['event_id']}/redeliver", headers=admin)
    assert r.status_code == 202
    assert ISO_RE.match(r.json["next_attempt_at"])
    assert r.json == {
        **delivered,
        "delivery": "pending",
        "attempts": 0,
        "next_attempt_at": r.json["next_attempt_at"],
        "delivered_at": None,
    }
    assert run_worker(call_app) == 1
    assert receiver.ids() == [delivered["event_id"]] * 2
    [again] = events(api, admin, call)
    assert (again["delivery"], again["attempts"], len(again["attempt_log"])) == ("delivered", 1, 2)


def test_redeliver_refusals(call_app, api, admin, app_token, receiver):
    """404 for an unknown event; 409 while a worker holds it; 409 when nothing to send to."""
    from call_api import webhooks

    r = api.post("/admin/events/msg_nope/redeliver", headers=admin)
    assert (r.status_code, r.json) == (
        404,
        {"error": "not_found", "error_description": "No such event."},
    )
    call = start_call(api, app_token(client_id="no-url-app"))
    [event] = events(api, admin, call)
    assert (event["delivery"], event["url"]) == ("none", None)
    r = api.post(f"/admin/events/{event['event_id']}/redeliver", headers=admin)
    assert (r.status_code, r.json) == (
        409,
        {
            "error": "conflict",
            "error_description": "This event has nowhere to go: the client has no webhook URL.",
        },
    )
    register(api, admin, receiver.url())
    call = start_call(api, app_token())
    [event] = events(api, admin, call)
    with call_app.app_context():
        settings = webhooks.Settings.from_config(call_app.config)
        [claimed] = webhooks.claim("holder", settings)
    r = api.post(f"/admin/events/{event['event_id']}/redeliver", headers=admin)
    assert (r.status_code, r.json) == (
        409,
        {
            "error": "conflict",
            "error_description": "A worker is delivering this event right now; retry shortly.",
        },
    )
    assert claimed.event_id == event["event_id"]


def test_a_new_url_takes_over_pending_events(call_app, api, admin, app_token, make_receiver):
    """Events still pending for the client's old URL go to the new one once it is set."""
    dead = make_receiver(lambda r, e: 503)
    register(api, admin, dead.url())
    call = start_call(api, app_token())
    run_worker(call_app)
    live = make_receiver()
    register(api, admin, live.url("/new"))
    [event] = events(api, admin, call)
    assert (event["url"], event["delivery"]) == (live.url("/new"), "pending")
    r = api.post(f"/admin/events/{event['event_id']}/redeliver", headers=admin)  # due now
    assert r.status_code == 202
    run_worker(call_app)
    assert (len(dead.requests), [r.path for r in live.requests]) == (1, ["/new"])


def test_per_call_status_callback_is_used_and_needs_a_secret(
    call_app, api, admin, app_token, make_receiver
):
    """A call's status_callback wins over the client's URL; without any registered endpoint
    there is no secret to sign with, so the attempt fails saying so (nothing is sent)."""
    own = make_receiver()
    call = start_call(api, app_token(client_id="cb-app"), status_callback=own.url("/cb"))
    assert run_worker(call_app) == 1
    assert own.requests == []
    [event] = events(api, admin, call)
    assert (event["url"], event["delivery"], event["attempts"], event["last_error"]) == (
        own.url("/cb"),
        "pending",
        1,
        "client cb-app has no webhook endpoint (no signing secret): register one with "
        "PUT /admin/clients/<client_id>/webhook or `call-api webhooks set`",
    )
    general = make_receiver()
    secret = register(api, admin, general.url(), client="cb-app")
    call = start_call(api, app_token(client_id="cb-app"), status_callback=own.url("/cb"))
    assert run_worker(call_app) == 1
    [received] = own.requests
    assert (
        Webhook(secret).verify(received.body, received.headers)["data"]["token_call"]
        == (call["token_call"])
    )
    assert general.requests == []


# --- the command line --------------------------------------------------------------------


@pytest.fixture
def cli(call_app, monkeypatch):
    from call_api.cli import main

    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    runner = call_app.test_cli_runner()
    return lambda *args: runner.invoke(main, list(args))


def test_cli_set_show_delete(cli):
    result = cli("webhooks", "set", "app-9", "--url", "http://127.0.0.1:9/h", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert SECRET_RE.match(shown["secret"])
    assert shown == {"client_id": "app-9", "url": "http://127.0.0.1:9/h", "secret": shown["secret"]}

    result = cli("webhooks", "set", "app-9", "--url", "http://127.0.0.1:9/i")
    assert (result.exit_code, result.output) == (
        0,
        "webhook endpoint updated for app-9: http://127.0.0.1:9/i\n",
    )
    result = cli("webhooks", "set", "app-9", "--url", "http://127.0.0.1:9/i", "--rotate-secret")
    assert result.exit_code == 0
    new_secret = result.output.splitlines()[1].rsplit(" ", 1)[1]
    assert SECRET_RE.match(new_secret) and new_secret != shown["secret"]

    result = cli("webhooks", "show", "app-9")
    assert result.exit_code == 0
    body = json.loads(result.output)
    assert body == {
        "client_id": "app-9",
        "url": "http://127.0.0.1:9/i",
        "secret": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    result = cli("webhooks", "delete", "app-9")
    assert (result.exit_code, result.output) == (0, '{"client_id": "app-9", "deleted": true}\n')
    result = cli("webhooks", "delete", "app-9")
    assert (result.exit_code, result.output) == (1, "Error: This client has no webhook endpoint.\n")
    result = cli("webhooks", "set", "app-9", "--url", "gopher://x/")
    assert (result.exit_code, result.output) == (
        1,
        "Error: The webhook URL must be an http:// or https:// URL.\n",
    )


def test_cli_worker_once(cli, api, admin, app_token, receiver):
    register(api, admin, receiver.url())
    token = app_token()
    hang_up(api, token, start_call(api, token))
    result = cli("worker", "--once", "--id", "cli-worker")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.splitlines()[-1])
    assert summary == {
        "worker": "cli-worker",
        "delivered": 2,
        "failed_attempts": 0,
        "seconds": summary["seconds"],
    }
    assert len(receiver.requests) == 2
    result = cli("worker", "--once", "--id", "has space")
    assert result.exit_code == 2
    assert "the worker id must be 1–48 visible ASCII characters" in result.output


def _signed(secret: str, body: str, msg_id: str = "msg_1") -> dict[str, str]:
    from call_api.webhooks import sign

    return sign(secret, msg_id, datetime.now(UTC), body)


def test_receive_command_verifies_without_an_app(tmp_path: Path):
    """`call-api webhooks receive` is a real server needing no app or database (the
    environment here would make creating the app fail); it answers 204 for a verified
    POST, 401 otherwise, and prints one JSON line each."""
    from call_api.webhooks import new_secret

    secret = new_secret()
    env = {
        **os.environ,
        "APP_ENV": "production",  # create_app() would refuse this environment outright
        "CALL_DATABASE_URL": "sqlite:///" + str(tmp_path / "never.db"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "call_api.cli",
            "webhooks",
            "receive",
            "--port",
            "0",
            "--secret",
            secret,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        cwd=tmp_path,
    )
    try:
        banner = proc.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", banner).group(1))
        body = json.dumps(
            {"type": "call.ringing", "data": {"state": "ringing", "token_call": "t1"}}
        )

        def post(headers: dict[str, str]) -> int:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/", data=body.encode(), headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert post(_signed(secret, body)) == 204
        assert json.loads(proc.stdout.readline()) == {
            "webhook_id": "msg_1",
            "type": "call.ringing",
            "state": "ringing",
            "token_call": "t1",
            "verified": True,
        }
        assert post(_signed(new_secret(), body, "msg_2")) == 401
        assert json.loads(proc.stdout.readline()) == {
            "webhook_id": "msg_2",
            "verified": False,
            "error": "No matching signature found",
        }
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    assert not (tmp_path / "never.db").exists()
