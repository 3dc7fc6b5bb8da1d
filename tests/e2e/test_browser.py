"""The demo flow in a real browser: Debian's Chromium, driven by Playwright, against the
auth server running under gunicorn.

authorization endpoint → login page → consent page → ``/test``, for the code flow (the code
is then exchanged at the token endpoint) and for the implicit flow (``/test`` shows the
token from the fragment), plus Refuse and a keyboard-only run. The pages are checked for
usability on the way: labelled inputs, a visible error, keyboard submission, the client's
name and the requested scope on the consent page. Screenshots of the login, login-error and
consent pages go to ``tests/artifacts/`` (git-ignored).

Needs ``/usr/bin/chromium`` (Debian's ``chromium`` package; ``.ci/run`` installs it) and the
``playwright`` Python package; never ``playwright install`` (no browser downloads here).
Without Chromium the tests are skipped, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # skipped (or, with CI=true, failed) by the browser fixture
    Browser = Page = Any  # type: ignore[misc,assignment]
    expect = None  # type: ignore[assignment]

from tests.conftest import (
    AUDIENCE,
    BACKENDS,
    IN_CI,
    ClientInfo,
    Databases,
    UserInfo,
    _databases,
    _prepare,
    auth_config,
    make_client,
    make_user,
    pkce_pair,
)
from tests.e2e.servers import Server, auth_env, free_port, run_service

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CLIENT_NAME = "Demo click-to-call app"
TIMEOUT_MS = 10_000
# The pages and the browser behave the same on either database; BROWSER_BACKENDS=all runs
# PostgreSQL too (its flows are covered by tests/auth_server and the other e2e tests).
BACKEND_PARAMS = BACKENDS if os.environ.get("BROWSER_BACKENDS") == "all" else ["sqlite"]


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true; .ci/run installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module; each test gets its own context (cookies)."""
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} not found: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        _unavailable("the playwright Python package is not installed (dev extras)")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


class Demo:
    """A running auth server, its demo client and user, and a fresh browser page."""

    def __init__(self, server: Server, client: ClientInfo, user: UserInfo, page: Page) -> None:
        self.server = server
        self.client = client
        self.user = user
        self.page = page
        # Console errors (CSP violations, a missing favicon...), script errors, and every
        # HTTP error response with its URL (Chromium's console line names none).
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", self._script_error)
        page.on("response", self._response)
        self.verifier: str | None = None

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _script_error(self, error: Any) -> None:
        self.problems.append(f"script error: {error}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status} {response.url}")

    @property
    def redirect_uri(self) -> str:
        return self.client.redirect_uris[0]

    def authorize_url(self, response_type: str, state: str) -> str:
        params = {
            "response_type": response_type,
            "client_id": self.client.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "call",
            "state": state,
        }
        if response_type == "code":
            self.verifier, challenge = pkce_pair()
            params.update(code_challenge=challenge, code_challenge_method="S256")
        return f"{self.server.url}/oauth/auth?{urlencode(params)}"

    def open_login(self, response_type: str, state: str) -> None:
        response = self.page.goto(self.authorize_url(response_type, state))
        assert response is not None and response.status == 200
        assert urlsplit(self.page.url).path == "/auth/login"
        assert self.page.title() == "Sign in · ClickCall"
        self.page.get_by_text(CLIENT_NAME).wait_for()

    def sign_in_with_enter(self) -> None:
        """Fill the form by its labels and submit it with the Enter key."""
        self.page.get_by_label("Username").fill(self.user.username)
        self.page.get_by_label("Password").fill(self.user.password)
        with self.page.expect_navigation():
            self.page.get_by_label("Password").press("Enter")
        assert urlsplit(self.page.url).path == "/auth/grant"

    def check_consent_page(self) -> None:
        page = self.page
        heading = page.get_by_role("heading", level=1)
        assert CLIENT_NAME in heading.inner_text()
        assert page.locator("ul.scopes li code").all_inner_texts() == ["call"]
        assert "phone calls" in page.locator("ul.scopes").inner_text()
        assert self.user.username in page.locator("main").inner_text()
        assert page.get_by_role("button", name="Accept").is_visible()
        assert page.get_by_role("button", name="Refuse").is_visible()

    def result(self) -> dict[str, Any]:
        """The JSON the /test page shows in ``#result`` (query and, via test.js, fragment)."""
        assert urlsplit(self.page.url).path == "/test"
        return dict(json.loads(self.page.locator("#result").inner_text()))


@pytest.fixture(scope="module", params=BACKEND_PARAMS)
def databases(request: pytest.FixtureRequest, session_dir: Path) -> Databases:
    """This module's own (module-scoped) ``databases``: one server per backend, not per test."""
    return _databases(request.param, session_dir)


@pytest.fixture(scope="module")
def auth_service(databases: Databases, keys_dir: Path) -> Iterator[Server]:
    """The auth server under gunicorn on a port chosen first, so that its issuer (and the
    demo client's redirect URI) is known before it starts."""
    from auth_server import create_app

    app = create_app(auth_config(databases, keys_dir))
    _prepare(app, "auth", databases.auth_url)  # the schema exists before the server starts
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()
    port = free_port()
    env = auth_env(databases.auth_url, str(keys_dir), f"http://127.0.0.1:{port}", AUDIENCE)
    with run_service("auth_server", env, port=port, workers=1, threads=4) as server:
        yield server


@pytest.fixture
def demo(auth_app: Any, auth_service: Server, browser: Browser) -> Iterator[Demo]:
    """Per test: empty tables (``auth_app``), the demo client and user, a fresh browser
    context (no cookies, so no login session or consent carried over)."""
    client = make_client(
        auth_app,
        CLIENT_NAME,
        redirect_uris=[f"{auth_service.url}/test"],
        grant_types=("authorization_code", "implicit"),
        response_types=("code", "token"),
    )
    user = make_user(auth_app, "alice", "alice-password")
    context = browser.new_context(
        viewport={"width": 960, "height": 720}, color_scheme="light", locale="en-US"
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    try:
        yield Demo(auth_service, client, user, context.new_page())
    finally:
        context.close()


def _jwt_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    assert len(parts) == 3 and all(parts), token
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    return dict(json.loads(base64.urlsafe_b64decode(payload)))


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_code_flow(demo: Demo) -> None:
    page = demo.page
    demo.open_login("code", "st4te-code")

    # Labelled inputs, found the way assistive technology finds them.
    username = page.get_by_label("Username")
    password = page.get_by_label("Password")
    assert username.is_visible() and password.is_visible()
    assert username.evaluate("el => el === document.activeElement")  # autofocus
    assert page.get_by_role("alert").count() == 0
    _shot(page, "login.png")

    # A wrong password: 401, a visible error announced as an alert, the username kept.
    username.fill(demo.user.username)
    password.fill("not-the-password")
    with page.expect_navigation() as posted:
        page.get_by_role("button", name="Sign in").click()
    assert posted.value.status == 401
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    assert re.search(r"username or password", alert.inner_text(), re.I), alert.inner_text()
    assert username.input_value() == demo.user.username
    assert password.input_value() == ""
    assert password.evaluate("el => el === document.activeElement")  # retype it right away
    assert password.get_attribute("aria-describedby") == "login-error"
    _shot(page, "login-error.png")

    # The right password, submitted with the keyboard: on to the consent page.
    demo.sign_in_with_enter()
    demo.check_consent_page()
    _shot(page, "consent.png")

    with page.expect_navigation(url=re.compile(r"/test\?")):
        page.get_by_role("button", name="Accept").click()
    result = demo.result()
    assert result["state"] == "st4te-code"
    assert result["code"]
    assert set(result) == {"code", "state", "iss"}
    assert result["iss"] == demo.server.url  # RFC 9207

    r = requests.post(
        f"{demo.server.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": demo.redirect_uri,
            "code_verifier": demo.verifier,
        },
        auth=(demo.client.client_id, demo.client.client_secret or ""),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    claims = _jwt_claims(body["access_token"])
    assert claims["iss"] == demo.server.url
    assert claims["client_id"] == demo.client.client_id
    assert claims["username"] == "alice"
    assert claims["scope"] == "call"

    # Consent is remembered: the next authorization goes straight back to /test.
    page.goto(demo.authorize_url("code", "again"))
    again = demo.result()
    assert again["state"] == "again" and again["code"] != result["code"]
    # The only failed load is the deliberate 401 (its response, and Chromium's console line).
    expected = {f"HTTP 401 {demo.server.url}/auth/login"}
    assert expected <= set(demo.problems)
    assert [p for p in demo.problems if p not in expected and "status of 401" not in p] == []


def test_implicit_flow_shows_fragment_token(demo: Demo) -> None:
    page = demo.page
    demo.open_login("token", "st4te-implicit")
    demo.sign_in_with_enter()
    demo.check_consent_page()
    with page.expect_navigation(url=re.compile(r"/test")):
        page.get_by_role("button", name="Accept").click()
    result = demo.result()
    assert set(result) == {"access_token", "token_type", "expires_in", "scope", "state", "iss"}
    assert result["iss"] == demo.server.url
    assert result["token_type"] == "Bearer"
    assert result["state"] == "st4te-implicit"
    assert isinstance(result["expires_in"], int) and result["expires_in"] > 0
    claims = _jwt_claims(result["access_token"])
    assert claims["iss"] == demo.server.url
    assert claims["aud"] == AUDIENCE
    assert claims["client_id"] == demo.client.client_id
    assert claims["scope"] == "call"
    # test.js removes the token from the address bar once it is shown.
    assert "#" not in page.url and "access_token" not in page.url
    assert demo.problems == []


def test_refuse_returns_access_denied(demo: Demo) -> None:
    page = demo.page
    demo.open_login("code", "st4te-refuse")
    demo.sign_in_with_enter()
    demo.check_consent_page()
    with page.expect_navigation(url=re.compile(r"/test\?")):
        page.get_by_role("button", name="Refuse").click()
    result = demo.result()
    assert result["error"] == "access_denied"
    assert result["state"] == "st4te-refuse"
    assert "code" not in result
    query = parse_qs(urlsplit(page.url).query)
    assert query["error"] == ["access_denied"]
    assert demo.problems == []


def test_keyboard_only(demo: Demo) -> None:
    """No mouse at all: type, Tab, Enter on the login page; Tab to Accept, Enter."""
    page = demo.page
    demo.open_login("code", "st4te-keys")
    # The username field has the focus on arrival; Tab goes to the password.
    page.keyboard.type(demo.user.username)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(demo.user.password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert urlsplit(page.url).path == "/auth/grant"
    demo.check_consent_page()

    # Nothing is preselected (a stray Enter must not consent); Tab reaches Accept first.
    assert page.evaluate("document.activeElement === document.body")
    focused: list[str] = []
    for _ in range(3):
        page.keyboard.press("Tab")
        label = page.evaluate("(document.activeElement.innerText || '').trim()")
        focused.append(label)
        if label == "Accept":
            break
    assert focused[-1] == "Accept", focused
    # The focus is visible (an outline), not only programmatic.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), outline
    with page.expect_navigation(url=re.compile(r"/test\?")):
        page.keyboard.press("Enter")
    result = demo.result()
    assert result["code"] and result["state"] == "st4te-keys"
    assert demo.problems == []
