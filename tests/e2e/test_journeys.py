"""The pages' journeys end to end in a real browser (Debian's Chromium driven by Playwright)
against real processes (``tests/e2e/stack.py``: both services under gunicorn on PostgreSQL,
the webhook worker, the simulator dialer, a webhook receiver).

1. A user revokes an app on ``/account`` (through its confirmation page, also hanging up the
   app's live call): the app's access token is refused by the call API within the
   revocation feed's delay, its refresh token is ``invalid_grant``, its call ends
   ``revoked``.
2. A user hangs up a live call from ``/calls``: the page shows the call appear and go
   in progress without a reload; the app's webhook receiver gets ``call.completed``,
   verified.
3. An operator disables a user in the auth console (the user search done with the keyboard
   only): the user's browser is signed out of both services at its next page view, and
   their access token is refused.
4. An operator rotates a client secret in the console: the new secret is shown once, the
   old one gets ``401 invalid_client``, the new one works.
5. A non-admin gets the 403 page on both consoles.

Screenshots of each step go to ``tests/artifacts/pages/`` (CI keeps them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.stack import (
    APP_NAME,
    LIVE_NUMBER,
    TIMEOUT,
    Stack,
    launch_browser,
    new_page,
    open_auth_page,
    open_calls_page,
    path_of,
    problems,
    shot,
    use_stack,
    wait_for,
)

try:
    from playwright.sync_api import Browser, expect
except ImportError:  # skipped (or, with CI=true, failed) by the browser fixture
    Browser = Any  # type: ignore[misc,assignment]
    expect = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser()


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Stack]:
    yield from use_stack(request)


def _token_request(stack: Stack, auth: tuple[str, str], **data: str) -> requests.Response:
    return requests.post(f"{stack.auth.url}/oauth/token", data=data, auth=auth, timeout=TIMEOUT)


def test_a_user_revokes_an_app_and_its_tokens_are_refused(stack: Stack, browser: Browser) -> None:
    user = stack.user("rita")
    tokens = stack.app_tokens(user)
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    assert stack.api_status(access) == 200
    live = stack.open_call(access)
    stack.wait_state(live, "in-progress")

    page = new_page(browser)
    try:
        open_auth_page(page, stack, "/account", user)
        apps = page.get_by_role("region", name="Apps with access")
        expect(apps.get_by_role("heading", name=APP_NAME)).to_be_visible()
        shot(page, "journey1-1-account.png", doc="account.png")

        apps.get_by_role("link", name=f"Revoke access for {APP_NAME}").click()
        page.wait_for_url(re.compile(r"/account/apps/revoke\?"))
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Revoke {APP_NAME}'s access?")
        page.get_by_label("Also hang up this app's live calls").check()
        shot(page, "journey1-2-confirm.png")
        with page.expect_navigation():
            page.get_by_role("button", name="Revoke access").click()
        assert path_of(page) == "/account"
        expect(page.get_by_role("status")).to_contain_text(
            f"{APP_NAME} no longer has access to your account. Its live calls are being hung up."
        )
        expect(apps).to_contain_text("No app has access to your account.")
        shot(page, "journey1-3-revoked.png")
        assert problems(page).unexpected() == []
    finally:
        page.context.close()

    # The call API learns it from the revocation feed (polled every second).
    wait_for("the access token refused", lambda: stack.api_status(access) == 401)
    r = _token_request(
        stack,
        (stack.app_client.client_id, stack.app_client.client_secret or ""),
        grant_type="refresh_token",
        refresh_token=refresh,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant"
    ended = stack.wait_state(live, "completed")
    assert ended["end_reason"] == "revoked"


def test_a_user_hangs_up_a_live_call_and_the_webhook_reports_it(
    stack: Stack, browser: Browser
) -> None:
    user = stack.user("hana")
    access = stack.app_tokens(user)["access_token"]
    page = new_page(browser)
    try:
        open_calls_page(page, stack, "/calls", user)
        status = page.locator("#live-status")
        expect(status).to_contain_text("You have no live calls.")
        page.evaluate("window.notReloaded = true")

        # The app opens a call; the open page shows it, then its answer, by itself.
        token_call = stack.open_call(access)
        row = page.locator(f'tr[data-token="{token_call}"]')
        expect(row).to_be_visible()
        expect(row.locator(".calls-state")).to_have_text("In progress")
        expect(status).to_contain_text("You have 1 live call.")
        assert page.evaluate("window.notReloaded === true"), "the page was reloaded"
        expect(row).to_contain_text(LIVE_NUMBER)
        expect(row).to_contain_text(stack.app_client.client_id)
        shot(page, "journey2-1-live.png", doc="calls-live.png")

        row.get_by_role("link", name=f"Hang up the call to {LIVE_NUMBER}").click()
        page.wait_for_url(re.compile(rf"/calls/{token_call}/hangup$"))
        expect(page.get_by_role("heading", level=1)).to_have_text(
            f"Hang up the call to {LIVE_NUMBER}?"
        )
        shot(page, "journey2-2-confirm.png")
        with page.expect_navigation():
            page.get_by_role("button", name="Hang up the call").click()
        assert page.url == f"{stack.calls.url}/calls?ended={token_call}"
        expect(page.locator(".calls-notice")).to_have_text(
            f"The call to {LIVE_NUMBER} has ended (completed)."
        )
        expect(status).to_contain_text("You have no live calls.")
        shot(page, "journey2-3-ended.png")
        assert problems(page).unexpected() == []
    finally:
        page.context.close()

    body = stack.call(token_call)
    assert (body["state"], body["end_reason"]) == ("completed", "hangup")

    def completed() -> list[Any]:
        return [
            d
            for d in stack.receiver.snapshot()
            if d.verified and d.event is not None and d.token_call == token_call
        ]

    wait_for(
        "call.completed delivered",
        lambda: "call.completed" in [d.event["type"] for d in completed()],
    )
    final = next(d for d in completed() if d.event["type"] == "call.completed")
    assert final.event["data"]["end_reason"] == "hangup"
    assert final.headers["webhook-id"] and final.headers["webhook-signature"].startswith("v1,")
    assert not [d for d in stack.receiver.snapshot() if not d.verified]


def test_an_operator_disables_a_user_who_is_signed_out_and_refused(
    stack: Stack, browser: Browser
) -> None:
    user = stack.user("dora")
    access = stack.app_tokens(user)["access_token"]
    assert stack.api_status(access) == 200
    person = new_page(browser)
    ops = new_page(browser)
    try:
        open_auth_page(person, stack, "/account", user)
        open_calls_page(person, stack, "/calls", user)

        open_auth_page(ops, stack, "/console", stack.operator)
        ops.get_by_role("navigation", name="Console").get_by_role("link", name="Users").click()
        ops.wait_for_url(re.compile(r"/console/users$"))

        # The search, keyboard only: Tab to the field, type, Enter; Tab to the result, Enter.
        for _ in range(20):
            ops.keyboard.press("Tab")
            if ops.evaluate("document.activeElement.id") == "q":
                break
        assert ops.evaluate("document.activeElement.id") == "q"
        outline = ops.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("", "none"), outline
        ops.keyboard.type(user.username)
        with ops.expect_navigation():
            ops.keyboard.press("Enter")
        expect(ops.get_by_role("region", name="Users")).to_contain_text(user.username)
        for _ in range(20):
            ops.keyboard.press("Tab")
            if ops.evaluate("document.activeElement.textContent") == user.username:
                break
        assert ops.evaluate("document.activeElement.textContent") == user.username
        with ops.expect_navigation():
            ops.keyboard.press("Enter")
        expect(ops.get_by_role("heading", level=1)).to_have_text(f"User {user.username}")
        shot(ops, "journey3-1-user.png")

        ops.get_by_role("link", name=f"Disable {user.username}…").click()
        expect(ops.get_by_role("heading", level=1)).to_have_text(f"Disable {user.username}?")
        shot(ops, "journey3-2-confirm.png")
        with ops.expect_navigation():
            ops.get_by_role("button", name=f"Disable {user.username}").click()
        expect(ops.get_by_role("status")).to_contain_text(f"{user.username} is disabled")
        expect(ops.locator("dl")).to_contain_text("disabled since")
        shot(ops, "journey3-3-disabled.png")

        # The user's browser: the next page view is the login page, on both services.
        person.goto(f"{stack.auth.url}/account")
        assert path_of(person) == "/auth/login", person.url

        def calls_signed_out() -> bool:
            person.goto(f"{stack.calls.url}/calls")
            return person.url.startswith(f"{stack.auth.url}/auth/login")

        wait_for("the call pages signed out", calls_signed_out)
        shot(person, "journey3-4-signed-out.png")

        # The audit trail names who did it.
        ops.goto(f"{stack.auth.url}/console/audit?action=user.disable")
        trail = ops.get_by_role("region", name="Audit entries")
        expect(trail).to_contain_text(f"user:{user.username}")
        expect(trail).to_contain_text(stack.operator.username)
        assert problems(ops).unexpected() == []
        # The call pages' polling may see the session end (a 401, which Chromium's console
        # reports without its URL) before the next page view.
        assert problems(person).unexpected("/calls/live.json", "status of 401") == []
    finally:
        person.context.close()
        ops.context.close()

    wait_for("the access token refused", lambda: stack.api_status(access) == 401)


def test_an_operator_rotates_a_client_secret(stack: Stack, browser: Browser) -> None:
    client = stack.client(
        "Nightly report",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="admin",
    )
    old = client.client_secret or ""
    form = {"grant_type": "client_credentials", "scope": "admin"}
    assert _token_request(stack, (client.client_id, old), **form).status_code == 200
    ops = new_page(browser)
    try:
        open_auth_page(ops, stack, "/console/clients", stack.operator)
        ops.get_by_role("link", name="Nightly report").click()
        expect(ops.get_by_role("heading", level=1)).to_have_text("Client Nightly report")
        ops.get_by_role("link", name="Rotate the secret…").click()
        expect(ops.get_by_role("heading", level=1)).to_have_text(
            "Rotate the secret of Nightly report?"
        )
        shot(ops, "journey4-1-confirm.png")
        with ops.expect_navigation():
            ops.get_by_role("button", name="Rotate the secret").click()
        expect(ops.get_by_role("heading", level=1)).to_have_text("New secret for Nightly report")
        new = ops.get_by_label("Client secret (shown once)").input_value()
        assert new and new != old
        shot(ops, "journey4-2-secret.png")

        r = _token_request(stack, (client.client_id, old), **form)
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "invalid_client"
        r = _token_request(stack, (client.client_id, new), **form)
        assert r.status_code == 200, r.text
        assert r.json()["access_token"]

        # Shown once: the client's page does not show it again.
        with ops.expect_navigation():
            ops.get_by_role("link", name="Done").click()
        expect(ops.get_by_role("heading", level=1)).to_have_text("Client Nightly report")
        assert new not in ops.content()
        assert problems(ops).unexpected() == []
    finally:
        ops.context.close()


def test_a_non_admin_gets_the_403_page_on_both_consoles(stack: Stack, browser: Browser) -> None:
    user = stack.user("nina")
    page = new_page(browser)
    try:
        open_auth_page(page, stack, "/account", user)
        response = page.goto(f"{stack.auth.url}/console")
        assert response is not None and response.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text("Operators only")
        expect(page.get_by_role("alert")).to_contain_text(user.username)
        shot(page, "forbidden-auth-console.png")

        open_calls_page(page, stack, "/calls", user)
        response = page.goto(f"{stack.calls.url}/calls/console")
        assert response is not None and response.status == 403
        assert page.url == f"{stack.calls.url}/calls/console"
        shot(page, "forbidden-call-console.png")
        assert page.get_by_role("link", name="Console").count() == 0
        assert problems(page).unexpected("403") == []
    finally:
        page.context.close()
