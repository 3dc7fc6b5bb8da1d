"""The device authorization grant (RFC 8628): the device endpoint, the /device page (code
entry, consent, decision) and polling with every error code of §3.5, on both databases.

Time is moved by replacing ``auth_server.device_flow.now`` (no sleeping)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from auth_server import device_flow
from tests.auth_server.helpers import basic, sign_in, token_request, verify_access_token
from tests.conftest import ISSUER, ClientInfo, UserInfo, make_client, make_user

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


class Clock:
    """``device_flow.now``, moved by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.t = device_flow.now()
        monkeypatch.setattr(device_flow, "now", lambda: self.t)

    def advance(self, seconds: int) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def device_client(
    app: Flask,
    public: bool = True,
    grants: tuple[str, ...] = (DEVICE, "refresh_token"),
    scope: str = "call",
    **kw: Any,
) -> ClientInfo:
    return make_client(
        app,
        "Desk phone",
        redirect_uris=[],
        grant_types=grants,
        response_types=(),
        scope=scope,
        public=public,
        **kw,
    )


def _auth(app_client: ClientInfo, data: dict[str, str]) -> dict[str, str]:
    if app_client.client_secret:
        return basic(app_client.client_id, app_client.client_secret)
    data["client_id"] = app_client.client_id
    return {}


def start(client: FlaskClient, app_client: ClientInfo, **data: str) -> TestResponse:
    headers = _auth(app_client, data)
    return client.post("/oauth/device_authorization", data=data, headers=headers)


def started(client: FlaskClient, app_client: ClientInfo, **data: str) -> dict[str, Any]:
    r = start(client, app_client, **data)
    assert r.status_code == 200, r.get_data(as_text=True)
    return dict(r.json)  # type: ignore[arg-type]


def poll(client: FlaskClient, app_client: ClientInfo, device_code: str) -> TestResponse:
    auth = "basic" if app_client.client_secret else "none"
    return token_request(
        client, app_client, {"grant_type": DEVICE, "device_code": device_code}, auth
    )


def csrf(client: FlaskClient) -> str:
    with client.session_transaction() as sess:
        return str(sess["csrf"])


def enter(client: FlaskClient, user_code: str, decision: str | None = None) -> TestResponse:
    data = {"user_code": user_code, "csrf_token": csrf(client)}
    if decision:
        data["decision"] = decision
    return client.post("/device", data=data)


def decide(client: FlaskClient, user: UserInfo, user_code: str, decision: str) -> TestResponse:
    """Sign in (if needed), type the code, then approve or deny on the consent page."""
    with client.session_transaction() as sess:
        signed_in = "sid" in sess
    if not signed_in:
        assert sign_in(client, user).status_code == 200
    r = enter(client, user_code)
    assert r.status_code == 200, r.get_data(as_text=True)
    return enter(client, user_code, decision)


def error_of(r: TestResponse, status: int = 400) -> tuple[str, str]:
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    assert r.headers["Cache-Control"] == "no-store"
    return r.json["error"], r.json["error_description"]  # type: ignore[index]


def test_public_device_signs_in_through_the_device_page(
    auth_app: Flask, client: FlaskClient, user: UserInfo, clock: Clock
) -> None:
    """Discovery, the device request, the browser (signed out → login → back to the code
    form, prefilled), the consent, approval, pending polls, tokens once, then refresh."""
    meta = client.get("/.well-known/oauth-authorization-server").json
    assert meta["device_authorization_endpoint"] == f"{ISSUER}/oauth/device_authorization"
    assert DEVICE in meta["grant_types_supported"]
    phone = device_client(auth_app)

    r = start(client, phone)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    body = r.json
    assert set(body) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert USER_CODE.match(body["user_code"]), body
    assert body["verification_uri"] == f"{ISSUER}/device"
    assert body["verification_uri_complete"] == f"{ISSUER}/device?user_code={body['user_code']}"
    assert (body["expires_in"], body["interval"]) == (600, 5)
    assert len(body["device_code"]) >= 40

    pending = (
        "authorization_pending",
        "The user has not yet approved the request on the /device page; poll again in 5 seconds.",
    )
    assert error_of(poll(client, phone, body["device_code"])) == pending

    browser = auth_app.test_client()
    r = browser.get(f"/device?user_code={body['user_code']}")
    assert r.status_code == 302
    back = f"/device?user_code={body['user_code']}"
    assert r.headers["Location"] == "/auth/login?next=" + quote(back, safe="")
    page = browser.get(r.headers["Location"])
    data = {
        "next": back,
        "username": user.username,
        "password": user.password,
        "csrf_token": csrf(browser),
    }
    r = browser.post("/auth/login", data=data)
    assert (r.status_code, r.headers["Location"]) == (303, back), page.get_data(as_text=True)
    r = browser.get(back)
    assert r.status_code == 200
    assert f'value="{body["user_code"]}"' in r.get_data(as_text=True)

    r = enter(browser, body["user_code"])
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html
    assert "Allow Desk phone to use your account?" in html
    assert "Only approve a code shown on your own device." in html
    assert "<code>call</code>" in html and body["user_code"] in html
    r = enter(browser, body["user_code"], "approve")
    assert r.status_code == 200
    assert "Desk phone can now use your account. Return to your device." in r.get_data(as_text=True)

    clock.advance(5)
    r = poll(client, phone, body["device_code"])
    assert r.status_code == 200, r.get_data(as_text=True)
    tokens = r.json
    assert tokens["token_type"] == "Bearer" and tokens["scope"] == "call"
    assert tokens["expires_in"] == 3600 and tokens["refresh_token"]
    claims = verify_access_token(client, tokens["access_token"])
    assert (claims["sub"], claims["client_id"], claims["scope"]) == (
        user.id,
        phone.client_id,
        "call",
    )

    clock.advance(5)
    assert error_of(poll(client, phone, body["device_code"])) == (
        "invalid_grant",
        "The device code was already used; start a new device authorization request for new "
        "tokens.",
    )
    r = token_request(
        client,
        phone,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        "none",
    )
    assert r.status_code == 200 and r.json["scope"] == "call"
    # The approval is the user's consent: the app shows on the account page.
    assert "Desk phone" in browser.get("/account").get_data(as_text=True)


def test_confidential_device_denied_and_approved_without_refresh_token(
    auth_app: Flask, client: FlaskClient, user: UserInfo, clock: Clock
) -> None:
    kiosk = device_client(auth_app, public=False, grants=(DEVICE,))
    denied = started(client, kiosk)
    browser = auth_app.test_client()
    r = decide(browser, user, denied["user_code"], "deny")
    assert r.status_code == 200
    assert "Desk phone was not given access." in r.get_data(as_text=True)
    assert error_of(poll(client, kiosk, denied["device_code"])) == (
        "access_denied",
        "The user denied the device's request on the /device page.",
    )
    # The secret is required: the client_id alone is no authentication for it.
    r = token_request(client, kiosk, {"grant_type": DEVICE, "device_code": "x"}, "none")
    assert error_of(r, 401) == (
        "invalid_client",
        "This client is confidential: send its client_secret too, with HTTP Basic auth or as "
        "the client_id and client_secret form fields.",
    )

    approved = started(client, kiosk)
    assert decide(browser, user, approved["user_code"], "approve").status_code == 200
    r = poll(client, kiosk, approved["device_code"])
    assert r.status_code == 200, r.get_data(as_text=True)
    assert "refresh_token" not in r.json and r.json["scope"] == "call"


def test_user_code_is_case_dash_and_space_insensitive(
    auth_app: Flask, client: FlaskClient, user: UserInfo
) -> None:
    phone = device_client(auth_app)
    code = started(client, phone)["user_code"]
    plain = code.replace("-", "")
    browser = auth_app.test_client()
    sign_in(browser, user)
    for typed in (code.lower(), f"{plain[:4]} {plain[4:]}".lower(), plain, f" {code} "):
        r = enter(browser, typed)
        assert r.status_code == 200, (typed, r.get_data(as_text=True))
        assert "Allow Desk phone to use your account?" in r.get_data(as_text=True)
    for typed in ("", "BCDF-GHJ", code.replace(code[0], "A"), code + "B", "BCDF-GHJK"):
        r = enter(browser, typed)
        assert r.status_code == 400, typed
        assert "That code is not valid or has expired." in r.get_data(as_text=True)
    r = browser.post(
        "/device",
        data={"user_code": "BCDF-GHJK", "csrf_token": csrf(browser)},
        headers={"Accept": "application/json"},
    )
    assert (r.status_code, r.json) == (
        400,
        {
            "error": "invalid_request",
            "error_description": "That code is not valid or has expired. Check the code your "
            "device shows.",
        },
    )


def test_polling_errors(auth_app: Flask, client: FlaskClient, user: UserInfo, clock: Clock) -> None:
    """Each refusal of RFC 8628 §3.5 and RFC 6749 §5.2, with its exact body; slow_down makes
    the interval grow by 5 s for good."""
    phone = device_client(auth_app)
    code = started(client, phone)["device_code"]

    def pending(interval: int) -> tuple[str, str]:
        return (
            "authorization_pending",
            "The user has not yet approved the request on the /device page; poll again in "
            f"{interval} seconds.",
        )

    def slow_down(interval: int) -> tuple[str, str]:
        return (
            "slow_down",
            f"Polling faster than the interval; wait at least {interval} seconds between polls "
            "of this device code from now on.",
        )

    assert error_of(poll(client, phone, code)) == pending(5)
    clock.advance(1)
    assert error_of(poll(client, phone, code)) == slow_down(10)
    clock.advance(6)  # 6 s < 10 s: too soon again
    assert error_of(poll(client, phone, code)) == slow_down(15)
    clock.advance(15)
    assert error_of(poll(client, phone, code)) == pending(15)  # the interval stays at 15 s
    clock.advance(14)
    assert error_of(poll(client, phone, code)) == slow_down(20)

    assert error_of(poll(client, phone, "not-a-device-code")) == (
        "invalid_grant",
        "The device code is unknown: this server never issued it, or it was cut short.",
    )
    r = token_request(client, phone, {"grant_type": DEVICE}, "none")
    assert error_of(r) == (
        "invalid_request",
        f"The 'device_code' parameter is required with grant_type={DEVICE}.",
    )
    web = make_client(auth_app, "Web app", public=True)
    r = token_request(client, web, {"grant_type": DEVICE, "device_code": code}, "none")
    assert error_of(r) == (
        "unauthorized_client",
        f"This client is not registered for grant_type={DEVICE}.",
    )
    assert error_of(start(client, web)) == (
        "unauthorized_client",
        f"This client is not registered for grant_type={DEVICE}.",
    )
    assert error_of(start(client, phone, scope="admin")) == (
        "invalid_scope",
        "This client may not ask for the scope 'admin'; it is registered for call.",
    )
    offered = client.get("/.well-known/oauth-authorization-server").json["scopes_supported"]
    assert error_of(start(client, phone, scope="nope")) == (
        "invalid_scope",
        f"The scope 'nope' is unknown; this server offers {', '.join(offered[:-1])} and "
        f"{offered[-1]}.",
    )
    r = client.post(
        "/oauth/device_authorization",
        json={"client_id": phone.client_id},
    )
    assert error_of(r)[0] == "invalid_request"

    # Expiry: the code and the page both refuse it after expires_in.
    late = started(client, phone)
    clock.advance(600)
    assert error_of(poll(client, phone, late["device_code"])) == (
        "expired_token",
        "The device code has expired before the user approved it; start a new device "
        "authorization request.",
    )
    browser = auth_app.test_client()
    sign_in(browser, user)
    assert enter(browser, late["user_code"]).status_code == 400


def test_disabled_user_and_withdrawn_consent(
    auth_app: Flask, client: FlaskClient, user: UserInfo, cli: Any
) -> None:
    """Approved, but the user is disabled (or withdraws the app) before the device polls:
    ``invalid_grant``, nothing issued."""
    phone = device_client(auth_app)
    browser = auth_app.test_client()
    first = started(client, phone)
    assert decide(browser, user, first["user_code"], "approve").status_code == 200
    withdraw = {"client_id": phone.client_id, "csrf_token": csrf(browser)}
    r = browser.post("/account/apps/revoke", data=withdraw)
    assert r.status_code == 303, r.get_data(as_text=True)
    assert error_of(poll(client, phone, first["device_code"])) == (
        "invalid_grant",
        "The user withdrew this application's access after approving the device code; start "
        "a new device authorization request.",
    )

    second = started(client, phone)
    assert decide(browser, user, second["user_code"], "approve").status_code == 200
    assert cli("users", "disable", user.username).exit_code == 0
    assert error_of(poll(client, phone, second["device_code"])) == (
        "invalid_grant",
        "The user who approved this device code no longer exists or is disabled.",
    )


def test_role_narrows_the_scope(auth_app: Flask, client: FlaskClient) -> None:
    """A user is granted what their role allows of what the device asks: the consent shows
    it, the token carries it; nothing allowed: the device gets access_denied."""
    console = device_client(auth_app, scope="call admin", allow_admin_for_users=True)
    alice = make_user(auth_app, "alice", "alice-password")
    root = make_user(auth_app, "root", "root-password", role="admin")

    for person, scope in ((alice, "call"), (root, "call admin")):
        body = started(client, console)
        browser = auth_app.test_client()
        sign_in(browser, person)
        html = enter(browser, body["user_code"]).get_data(as_text=True)
        assert ("<code>admin</code>" in html) is (person is root)
        assert enter(browser, body["user_code"], "approve").status_code == 200
        r = poll(client, console, body["device_code"])
        assert r.status_code == 200, r.get_data(as_text=True)
        assert r.json["scope"] == scope

    body = started(client, console, scope="admin")
    browser = auth_app.test_client()
    sign_in(browser, alice)
    r = enter(browser, body["user_code"])
    assert r.status_code == 200
    assert "role allows none of what Desk phone asks for" in r.get_data(as_text=True)
    assert error_of(poll(client, console, body["device_code"]))[0] == "access_denied"


def test_cli_registers_a_public_device_client(cli: Any) -> None:
    r = cli("clients", "create", "--name", "CLI tool", "--grant-type", DEVICE, "--public", "--json")
    assert r.exit_code == 0, r.output
    client_id = json.loads(r.output)["client_id"]
    described = json.loads(cli("clients", "show", client_id).output)
    assert described["grant_types"] == [DEVICE] and described["redirect_uris"] == []
    assert described["public"] is True
