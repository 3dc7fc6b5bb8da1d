"""Attacks on the device authorization grant (RFC 8628 §5): guessing user codes on the
/device page, cross-site approval, one client polling with another's device code, a code
decided twice, concurrent polls, and the sign-in detour as an open redirect."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.auth_server.helpers import sign_in, token_request, verify_access_token
from tests.auth_server.test_device_flow import (
    DEVICE,
    csrf,
    decide,
    device_client,
    enter,
    error_of,
    poll,
    started,
)
from tests.conftest import make_user

NOT_VALID = "That code is not valid or has expired."


@pytest.fixture
def limited_app(app_with: Callable[..., Flask]) -> Flask:
    """Throttling on (the suite turns it off): 3 wrong codes a minute per user, 5 per
    address."""
    return app_with(
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI="memory://",
        AUTH_DEVICE_LIMIT_PER_USER="3 per minute",
        AUTH_DEVICE_LIMIT_PER_IP="5 per minute",
    )


def at(ip: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": ip}}


def guess(browser: FlaskClient, code: str, ip: str) -> Any:
    return browser.post("/device", data={"user_code": code, "csrf_token": csrf(browser)}, **at(ip))


def test_guessing_user_codes_is_throttled_per_user_and_per_address(limited_app: Flask) -> None:
    """Wrong codes spend a per-user and a per-address budget; once spent, even a right code
    is refused (429 with Retry-After) until the window passes; others are not affected."""
    client = limited_app.test_client()
    phone = device_client(limited_app)
    code = started(client, phone)["user_code"]
    mallory, eve, alice = (make_user(limited_app, name) for name in ("mallory", "eve", "alice"))

    first = limited_app.test_client()
    sign_in(first, mallory)
    for wrong in ("BCDF-GHJK", "BCDF-GHJL", "BCDF-GHJM"):
        r = guess(first, wrong, "203.0.113.7")
        assert r.status_code == 400 and NOT_VALID in r.get_data(as_text=True)
    r = guess(first, code, "203.0.113.7")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert "Too many attempts" in r.get_data(as_text=True)

    second = limited_app.test_client()  # another account, same address: 2 left there
    sign_in(second, eve)
    assert guess(second, "BCDF-GHJN", "203.0.113.7").status_code == 400
    assert guess(second, "BCDF-GHJP", "203.0.113.7").status_code == 400
    assert guess(second, code, "203.0.113.7").status_code == 429

    owner = limited_app.test_client()  # the code's owner, elsewhere: unaffected
    sign_in(owner, alice)
    r = guess(owner, code, "198.51.100.2")
    assert r.status_code == 200 and "Allow Desk phone" in r.get_data(as_text=True)


def test_approval_needs_the_sessions_csrf_token(auth_app: Flask, client: FlaskClient) -> None:
    """A cross-site form cannot approve a code for the signed-in user: no or another CSRF
    token is 400 invalid_request, and the code stays pending."""
    phone = device_client(auth_app)
    body = started(client, phone)
    browser = auth_app.test_client()
    sign_in(browser, make_user(auth_app, "alice"))
    for token in (None, "forged"):
        data = {"user_code": body["user_code"], "decision": "approve"}
        if token:
            data["csrf_token"] = token
        r = browser.post("/device", data=data, headers={"Accept": "application/json"})
        assert (r.status_code, r.json["error"]) == (400, "invalid_request")
        assert "CSRF check failed" in r.json["error_description"]
    assert error_of(poll(client, phone, body["device_code"]))[0] == "authorization_pending"


def test_another_clients_device_code_is_refused(auth_app: Flask, client: FlaskClient) -> None:
    """A client polling with a device code issued to another client gets invalid_grant,
    before or after approval; the code still works for its own client."""
    phone = device_client(auth_app)
    thief = device_client(auth_app)
    body = started(client, phone)
    other = (
        "invalid_grant",
        "The device code was issued to another client.",
    )
    assert error_of(poll(client, thief, body["device_code"])) == other
    decide(auth_app.test_client(), make_user(auth_app, "alice"), body["user_code"], "approve")
    assert error_of(poll(client, thief, body["device_code"])) == other
    assert poll(client, phone, body["device_code"]).status_code == 200


def test_a_decided_code_cannot_be_decided_again_by_another_user(
    auth_app: Flask, client: FlaskClient
) -> None:
    """Once a user approved a code, a second user typing it (or posting a decision for it)
    is told the code is not valid; the tokens are the first user's."""
    phone = device_client(auth_app)
    body = started(client, phone)
    alice, mallory = make_user(auth_app, "alice"), make_user(auth_app, "mallory")
    assert decide(auth_app.test_client(), alice, body["user_code"], "approve").status_code == 200
    second = auth_app.test_client()
    sign_in(second, mallory)
    for decision in (None, "approve", "deny"):
        r = enter(second, body["user_code"], decision)
        assert r.status_code == 400 and NOT_VALID in r.get_data(as_text=True)
    r = poll(client, phone, body["device_code"])
    assert r.status_code == 200
    assert verify_access_token(client, r.json["access_token"])["sub"] == alice.id


def test_concurrent_polls_get_tokens_once(auth_app: Flask, client: FlaskClient) -> None:
    """Two polls of an approved code at once: one gets tokens, the other invalid_grant."""
    phone = device_client(auth_app)
    body = started(client, phone)
    decide(auth_app.test_client(), make_user(auth_app, "alice"), body["user_code"], "approve")
    barrier = threading.Barrier(4)
    results: list[int] = []

    def run() -> None:
        poller = auth_app.test_client()
        barrier.wait()
        data = {"grant_type": DEVICE, "device_code": body["device_code"]}
        results.append(token_request(poller, phone, data, "none").status_code)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 400, 400, 400]


def test_sign_in_detour_is_no_open_redirect(auth_app: Flask) -> None:
    """Signed out, /device sends the browser to the login form with ``next`` back to
    /device; a hostile ``user_code`` never makes ``next`` point elsewhere."""
    browser = auth_app.test_client()
    for value, back in (
        ("bcdf ghjk", "/device?user_code=BCDF-GHJK"),
        ("//evil.example/x", "/device"),
        ("https://evil.example", "/device"),
    ):
        r = browser.get("/device", query_string={"user_code": value})
        assert r.status_code == 302
        location = urlsplit(r.headers["Location"])
        assert location.path == "/auth/login"
        assert parse_qs(location.query) == {"next": [back]}
    # a signed-out POST (no session, so no CSRF token) decides nothing
    r = browser.post("/device", data={"user_code": "BCDF-GHJK", "decision": "approve"})
    assert r.status_code == 400 and "CSRF check failed" in r.get_data(as_text=True)


def test_device_codes_are_rate_limited_per_address(app_with) -> None:
    """Each POST /oauth/device_authorization stores a device code: a client (or anyone with
    a public client's id) cannot fill the table. AUTH_DEVICE_AUTHORIZATION_LIMIT per
    address; another address is not affected."""
    app = app_with(
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI="memory://",
        AUTH_DEVICE_AUTHORIZATION_LIMIT="2/minute",
    )
    client = app.test_client()
    phone = device_client(app)

    def send(ip: str) -> Any:
        return client.post(
            "/oauth/device_authorization", data={"client_id": phone.client_id}, **at(ip)
        )

    assert [send("127.0.0.7").status_code for _ in range(3)] == [200, 200, 429]
    r = send("127.0.0.7")
    assert (r.status_code, "Retry-After" in r.headers) == (429, True)
    assert r.json == {
        "error": "too_many_requests",
        "error_description": "Too many attempts; try again in 60 seconds.",
    }
    assert send("127.0.0.8").status_code == 200
