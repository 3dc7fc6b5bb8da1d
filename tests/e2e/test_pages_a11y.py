"""Every page for people, checked in Chromium with axe-core (WCAG 2.0, 2.1 and 2.2, levels A
and AA: no violation) at a 390 px wide viewport, where no page may scroll sideways (a wide
table scrolls inside its own container).

The pages of the auth server (login, consent, ``/account`` and its confirmation pages, the
``/device`` pages, the operator's console) and of the call API (``/calls``, the history, the hang-up confirmation,
the error and signed-out pages, the operator's console), each reached the way a person
reaches it, with data on it (a live call, an ended call, audit entries, a staged key), on
the running stack of ``tests/e2e/stack.py``. Each test lists every problem of every page it
checked, then fails once. A screenshot of each page at 390 px goes to
``tests/artifacts/pages/a11y-*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import UserInfo
from tests.e2e.stack import (
    ANSWERS,
    LIVE_NUMBER,
    Stack,
    launch_browser,
    new_page,
    open_auth_page,
    open_calls_page,
    path_of,
    problems,
    shot,
    use_stack,
)

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # skipped (or, with CI=true, failed) by the browser fixture
    Browser = Page = Any  # type: ignore[misc,assignment]
    expect = None  # type: ignore[assignment]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_browser()


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Stack]:
    yield from use_stack(request)


WIDTH = 390
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
# The stylesheet has a dark scheme (prefers-color-scheme): its contrast is checked too.
DARK_OPTIONS = {
    "runOnly": {"type": "rule", "values": ["color-contrast"]},
    "resultTypes": ["violations"],
}

# The elements sticking out past the viewport's right edge, outside any container that
# scrolls by itself: what makes a page scroll sideways.
OVERFLOWING = """(width) => {
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.right <= width + 0.5 || box.width === 0) continue;
    let inner = false;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const s = getComputedStyle(p);
      if (['auto', 'scroll', 'hidden'].includes(s.overflowX)) { inner = true; break; }
    }
    if (!inner) out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '') +
      ' right=' + Math.round(box.right));
  }
  return out.slice(0, 5);
}"""


@dataclass
class Checker:
    failures: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def __call__(self, page: Page, name: str) -> None:
        """Check the page as it is shown now."""
        from axe_playwright_python.sync_playwright import Axe

        page.wait_for_load_state("load")
        assert page.viewport_size is not None and page.viewport_size["width"] == WIDTH
        axe = Axe()
        self._violations(name, page, axe.run(page, options=AXE_OPTIONS).response)
        page.emulate_media(color_scheme="dark")
        self._violations(f"{name} (dark)", page, axe.run(page, options=DARK_OPTIONS).response)
        page.emulate_media(color_scheme="light")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > WIDTH:
            culprits = page.evaluate(OVERFLOWING, WIDTH)
            self.failures.append(
                f"{name} ({path_of(page)}): scrolls sideways at {WIDTH} px "
                f"(scrollWidth {width}): {culprits}"
            )
        shot(page, f"a11y-{name}.png")
        self.checked.append(name)

    def _violations(self, name: str, page: Page, results: dict[str, Any]) -> None:
        for violation in results["violations"]:
            targets = [" ".join(map(str, node["target"])) for node in violation["nodes"]]
            self.failures.append(
                f"{name} ({path_of(page)}): {violation['id']} [{violation['impact']}] "
                f"{violation['help']}: {targets[:5]}"
            )

    def at_1024(self, page: Page, name: str, doc: str) -> None:
        """A README screenshot of the page at 1024 px (then back to 390 px)."""
        page.set_viewport_size({"width": 1024, "height": 768})
        shot(page, f"doc-{doc}", doc=doc)
        page.set_viewport_size({"width": WIDTH, "height": 844})

    def verdict(self, page: Page, expected: int) -> None:
        # The 4xx pages are checked on purpose; anything else (a 5xx, a script error, a
        # CSP violation) is a failure too.
        seen = problems(page).unexpected("HTTP 4", "status of 4")
        assert self.failures + seen == [], "\n".join(self.failures + seen)
        assert len(self.checked) == expected, self.checked


@dataclass
class People:
    ada: UserInfo
    live_call: str
    ended_call: str


@pytest.fixture(scope="module")
def people(stack: Stack) -> Iterator[People]:
    """A user with a live call and an ended one, both opened by the app."""
    ada = stack.user("ada")
    access = stack.app_tokens(ada)["access_token"]
    ended = stack.open_call(access, ANSWERS)
    live = stack.open_call(access, LIVE_NUMBER)
    stack.wait_state(ended, "completed")
    stack.wait_state(live, "in-progress")
    yield People(ada, live, ended)


def narrow_page(browser: Browser) -> Page:
    return new_page(browser, WIDTH, 844)


def test_signed_out_pages(stack: Stack, browser: Browser) -> None:
    check = Checker()
    page = narrow_page(browser)
    try:
        page.goto(f"{stack.auth.url}/account")
        assert path_of(page) == "/auth/login"
        check(page, "login")
        page.get_by_label("Username").fill("nobody")
        page.get_by_label("Password").fill("not-the-password")
        with page.expect_navigation():
            page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_be_visible()
        check(page, "login-error")

        page.goto(f"{stack.calls.url}/calls/signed-out")
        check(page, "calls-signed-out")
        response = page.goto(f"{stack.calls.url}/calls/callback?state=forged&code=x")
        assert response is not None and response.status == 400
        check(page, "calls-error")
        # The sign-in to the call pages: the login form names the client.
        page.goto(f"{stack.calls.url}/calls")
        assert path_of(page) == "/auth/login"
        expect(page.get_by_text("ClickCall call pages")).to_be_visible()
        check(page, "login-for-client")
        check.verdict(page, 5)
    finally:
        page.context.close()


def test_a_users_pages(stack: Stack, browser: Browser, people: People) -> None:
    check = Checker()
    page = narrow_page(browser)
    user = people.ada
    try:
        # The auth server: the account page and each of its confirmation pages.
        open_auth_page(page, stack, "/account", user)
        check(page, "account")
        page.get_by_role("link", name=re.compile(r"^Revoke access for ")).first.click()
        page.wait_for_url(re.compile(r"/account/apps/revoke\?"))
        check(page, "account-revoke")
        page.go_back()
        page.get_by_role("link", name="Sign out this session").click()
        page.wait_for_url(re.compile(r"/account/sessions/\d+/sign-out$"))
        check(page, "account-sign-out")
        page.go_back()
        page.get_by_role("link", name=re.compile(r"^Sign out everywhere")).click()
        page.wait_for_url(re.compile(r"/account/sign-out-everywhere$"))
        check(page, "account-sign-out-everywhere")
        page.go_back()
        page.get_by_label("Current password").fill("not-my-password")
        page.get_by_label("New password", exact=True).fill("a-new-password")
        page.get_by_label("New password again").fill("a-new-password")
        with page.expect_navigation():
            page.get_by_role("button", name="Change password").click()
        expect(page.get_by_role("alert")).to_be_visible()
        check(page, "account-password-error")
        response = page.goto(f"{stack.auth.url}/console")
        assert response is not None and response.status == 403
        check(page, "console-forbidden")

        # The call API: signing in shows the consent page for the call pages first.
        open_calls_page(page, stack, "/calls", user, on_consent=lambda: check(page, "consent"))
        expect(page.locator(f'tr[data-token="{people.live_call}"]')).to_be_visible()
        check(page, "calls-live")
        page.goto(f"{stack.calls.url}/calls/history")
        expect(page.locator("table.calls-table tbody tr")).to_have_count(2)
        check(page, "calls-history")
        response = page.goto(f"{stack.calls.url}/calls/history?from=yesterday")
        assert response is not None and response.status == 400
        check(page, "calls-history-bad-filter")
        page.goto(f"{stack.calls.url}/calls/{people.live_call}/hangup")
        check(page, "calls-hangup")
        page.goto(f"{stack.calls.url}/calls/{people.ended_call}/hangup")
        check(page, "calls-hangup-ended")
        response = page.goto(f"{stack.calls.url}/calls/not-a-call/hangup")
        assert response is not None and response.status == 404
        check(page, "calls-not-found")
        response = page.goto(f"{stack.calls.url}/calls/console")
        assert response is not None and response.status == 403
        check(page, "call-console-forbidden")
        check.verdict(page, 14)
    finally:
        page.context.close()


def test_the_device_pages(stack: Stack, browser: Browser, people: People) -> None:
    """RFC 8628's /device pages: the code form (prefilled from verification_uri_complete),
    a wrong code, the consent, and the result."""
    check = Checker()
    page = narrow_page(browser)
    device = stack.client(
        "Desk phone",
        redirect_uris=[],
        grant_types=("urn:ietf:params:oauth:grant-type:device_code",),
        response_types=(),
        public=True,
    )
    started = stack.http.post(
        f"{stack.auth.url}/oauth/device_authorization", data={"client_id": device.client_id}
    )
    assert started.status_code == 200, started.text
    user_code = started.json()["user_code"]
    try:
        open_auth_page(page, stack, f"/device?user_code={user_code}", people.ada)
        check(page, "device")
        page.get_by_label("Code").fill("BCDF-GHJK")
        with page.expect_navigation():
            page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("alert")).to_be_visible()
        check(page, "device-error")
        page.get_by_label("Code").fill(user_code.lower())
        with page.expect_navigation():
            page.get_by_role("button", name="Continue").click()
        check(page, "device-consent")
        with page.expect_navigation():
            page.get_by_role("button", name="Approve").click()
        expect(page.get_by_role("heading", name="Device connected")).to_be_visible()
        check(page, "device-done")
        check.verdict(page, 4)
    finally:
        page.context.close()


def test_the_operators_pages(stack: Stack, browser: Browser, people: People) -> None:
    check = Checker()
    page = narrow_page(browser)
    operator = stack.operator
    app = stack.app_client.client_id
    try:
        # The auth server's console.
        open_auth_page(page, stack, "/console", operator)
        check(page, "console")
        page.goto(f"{stack.auth.url}/console/users")
        check(page, "console-users")
        check.at_1024(page, "console-users", "console-users.png")
        page.goto(f"{stack.auth.url}/console/users/{people.ada.id}")
        check(page, "console-user")
        page.goto(f"{stack.auth.url}/console/users/{people.ada.id}/disable")
        check(page, "console-user-disable")
        # A confirmation that does not come (a stale or hand-made form): the 400 page.
        page.locator("input[name=confirm]").evaluate("el => el.remove()")
        with page.expect_navigation() as answer:
            page.get_by_role("button", name=f"Disable {people.ada.username}").click()
        assert answer.value is not None and answer.value.status == 400
        check(page, "console-unconfirmed")
        page.goto(f"{stack.auth.url}/console/clients")
        check(page, "console-clients")
        page.goto(f"{stack.auth.url}/console/clients/{app}")
        check(page, "console-client")
        page.goto(f"{stack.auth.url}/console/clients/{app}/rotate")
        check(page, "console-client-rotate")
        page.goto(f"{stack.auth.url}/console/clients/{app}/delete")
        check(page, "console-client-delete")
        page.goto(f"{stack.auth.url}/console/clients/new")
        check(page, "console-client-new")
        page.get_by_label("Name").fill("Page check app")
        page.get_by_label("Redirect URIs").fill("http://127.0.0.1:9/callback")
        with page.expect_navigation():
            page.get_by_role("button", name="Register the client").click()
        expect(page.get_by_label("Client secret (shown once)")).to_be_visible()
        check(page, "console-secret")
        page.goto(f"{stack.auth.url}/console/keys")
        with page.expect_navigation():
            page.get_by_role("button", name="Stage a new key").click()
        expect(page.get_by_role("status")).to_contain_text("staged")
        check(page, "console-keys")
        page.get_by_role("link", name=re.compile(r"^Retire key ")).first.click()
        page.wait_for_url(re.compile(r"/console/keys/[^/]+/retire$"))
        check(page, "console-key-retire")
        page.goto(f"{stack.auth.url}/console/audit")
        check(page, "console-audit")

        # The call API's console (signed in through the auth server: no password again).
        open_calls_page(page, stack, "/calls/console", operator)
        check(page, "call-console")
        check.at_1024(page, "call-console", "call-console.png")
        page.goto(f"{stack.calls.url}/calls/console/users")
        check(page, "call-console-users-empty")
        page.goto(f"{stack.calls.url}/calls/console/users?subject={people.ada.id}")
        page.get_by_label(re.compile(r"^New limit")).fill("5")
        with page.expect_navigation():
            page.get_by_role("button", name="Set limit").click()
        expect(page.get_by_role("status")).to_contain_text("The limit is saved.")
        check(page, "call-console-users")
        page.goto(f"{stack.calls.url}/calls/console/live")
        check(page, "call-console-live")
        page.goto(f"{stack.calls.url}/calls/console/history")
        check(page, "call-console-history")
        page.goto(f"{stack.calls.url}/calls/console/webhooks")
        check(page, "call-console-webhooks")
        page.goto(f"{stack.calls.url}/calls/console/calls/{people.ended_call}")
        check(page, "call-console-call")
        page.goto(f"{stack.calls.url}/calls/console/calls/{people.live_call}/end")
        check(page, "call-console-end")
        page.locator("#confirm").evaluate("el => { el.required = false; }")
        with page.expect_navigation() as answer:
            page.get_by_role("button", name="Force-end the call").click()
        assert answer.value is not None and answer.value.status == 400
        expect(page.get_by_role("alert")).to_be_visible()
        check(page, "call-console-end-unconfirmed")
        page.goto(f"{stack.calls.url}/calls/console/audit")
        check(page, "call-console-audit")
        check.verdict(page, 24)
    finally:
        page.context.close()
