"""One running ClickCall for the browser tests of the pages (``test_journeys.py`` and
``test_pages_a11y.py``), and the browser that drives it.

The stack, started by the first module that uses it and stopped after the last one (each
module has its own Chromium: its fixtures ``browser`` and ``stack`` call
``launch_browser()`` and ``use_stack()``):

- the auth server and the call API under gunicorn on fresh PostgreSQL databases (SQLite
  when no PostgreSQL is reachable outside CI), with their own signing key;
- the call API's pages registered as the auth server's client ``calls-web`` (as
  ``auth_server.demo.ensure_calls_web_client`` does), handed to the call API as
  ``CALL_WEB_CLIENT_ID``/``SECRET`` with ``CALL_WEB_URL`` its real address; the revocation
  feed polled every second;
- a ``call-api worker`` and a ``call-api simulator`` (short ring time), as subprocesses;
- a webhook receiver (``tests.faults.lifecycle.Receiver``: a real HTTP server verifying every
  delivery with ``standardwebhooks``) registered for the app client;
- an operator (role admin), an app client (code + refresh token, scope ``call``) and an
  admin client (client_credentials, scope ``admin``) for the test's own API calls.

Tests add their own users (``stack.user()``) so the journeys never share a person whose
state they change. Each page is driven in Chromium through the real sign-in flows.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask

from tests.conftest import (
    _PG,
    AUDIENCE,
    IN_CI,
    ClientInfo,
    Databases,
    Flow,
    UserInfo,
    auth_config,
    call_config,
    create_pg_database,
    drop_pg_database,
    make_client,
    make_user,
)
from tests.e2e.servers import Server, auth_env, call_env, free_port, run_service
from tests.faults.lifecycle import Procs, Receiver, start_simulator, start_worker

try:
    from playwright.sync_api import Browser, Page
except ImportError:  # skipped (or, with CI=true, failed) by the browser fixture
    Browser = Page = Any  # type: ignore[misc,assignment]

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
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts" / "pages"
DOC_SCREENSHOTS = ROOT / "docs" / "screenshots"
# UPDATE_SCREENSHOTS=1: the README's screenshots (docs/screenshots/) are written again.
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"

# The machine may be busy (2 cores, other test runs): generous deadlines for every wait.
TIMEOUT = 20.0
TIMEOUT_MS = int(TIMEOUT * 1000)

LIVE_NUMBER = "+14155550123"  # the simulator answers and keeps it in progress
ANSWERS = "+15005550006"  # rings, answers, talks, hangs up: completed
RING_SECONDS = 0.5
TALK_SECONDS = 0.5
CALLS_WEB_CLIENT = "calls-web"
CALLS_WEB_NAME = "ClickCall call pages"
APP_NAME = "Dial-a-friend"


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true; .ci/run installs Debian's chromium)")
    pytest.skip(reason)


def wait_for(what: str, check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """``check()``'s first truthy value, polled until ``timeout`` (a deadline wait)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s (last: {value!r})")
        time.sleep(0.1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Stack:
    auth: Server
    calls: Server
    auth_app: Flask  # in-process, same database and keys: registers users, mints app tokens
    receiver: Receiver
    procs: Procs
    operator: UserInfo
    app_client: ClientInfo
    admin_client: ClientInfo
    http: requests.Session = field(default_factory=requests.Session)
    _admin_token: str | None = None

    # --- people and tokens --------------------------------------------------------------
    def user(self, name: str, role: str = "user") -> UserInfo:
        """A new user ``name-xxxx`` (unique, so both test modules and reruns never clash)."""
        return make_user(self.auth_app, f"{name}-{uuid.uuid4().hex[:6]}", f"{name}-password", role)

    def client(self, name: str, **options: Any) -> ClientInfo:
        return make_client(self.auth_app, name, **options)

    def app_tokens(self, user: UserInfo) -> dict[str, Any]:
        """The app client's tokens for ``user`` (authorize, sign in, consent, code: the
        flow run in-process on the same database, so ``/account`` lists the app)."""
        return Flow(self.auth_app.test_client()).token(user, self.app_client)

    def admin_headers(self) -> dict[str, str]:
        if self._admin_token is None:
            r = self.http.post(
                f"{self.auth.url}/oauth/token",
                data={"grant_type": "client_credentials", "scope": "admin"},
                auth=(self.admin_client.client_id, self.admin_client.client_secret or ""),
                timeout=TIMEOUT,
            )
            assert r.status_code == 200, r.text
            self._admin_token = str(r.json()["access_token"])
        return bearer(self._admin_token)

    # --- the call API -------------------------------------------------------------------
    def open_call(self, access_token: str, number: str = LIVE_NUMBER) -> str:
        r = self.http.post(
            f"{self.calls.url}/rest/call",
            json={"number": number},
            headers=bearer(access_token),
            timeout=TIMEOUT,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token_call"])

    def api_status(self, access_token: str) -> int:
        """What the call API answers the token (``GET /rest/call``: the live calls)."""
        r = self.http.get(
            f"{self.calls.url}/rest/call", headers=bearer(access_token), timeout=TIMEOUT
        )
        return r.status_code

    def call(self, token_call: str) -> dict[str, Any]:
        r = self.http.get(
            f"{self.calls.url}/admin/calls/{token_call}",
            headers=self.admin_headers(),
            timeout=TIMEOUT,
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_state(self, token_call: str, *states: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            body = self.call(token_call)
            return body if body["state"] in states else None

        return dict(wait_for(f"call {token_call} in {states}", reached))

    def keep_logs(self) -> None:
        """The processes' logs, next to the screenshots (CI keeps tests/artifacts/)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "auth_server.log").write_text(self.auth.log())
        (ARTIFACTS / "call_api.log").write_text(self.calls.log())
        for proc in self.procs.started:
            (ARTIFACTS / f"{proc.name}.log").write_text(proc.log())


# --- the stack, once per process ---------------------------------------------------------

_shared: dict[str, Any] = {}


def _databases(folder: Path) -> tuple[Databases, Callable[[], None]]:
    if _PG:
        tag = f"{os.getpid()}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
        names = (f"clickcall_pages_auth_{tag}", f"clickcall_pages_calls_{tag}")
        dbs = Databases("postgresql", create_pg_database(names[0]), create_pg_database(names[1]))

        def drop() -> None:
            for name in names:
                drop_pg_database(name)

        return dbs, drop
    # Outside CI without PostgreSQL: SQLite files (CI always runs this on PostgreSQL).
    return Databases(
        "sqlite", f"sqlite:///{folder}/auth.db", f"sqlite:///{folder}/calls.db"
    ), lambda: None


def _start(stop: ExitStack) -> Stack:
    from auth_server import create_app as create_auth
    from auth_server.clients import create_client
    from call_api import create_app as create_calls
    from shared.keys import KeyStore, public_pem

    folder = Path(tempfile.mkdtemp(prefix="clickcall-pages-"))
    stop.callback(shutil.rmtree, folder, True)
    keys_dir = folder / "keys"
    key = KeyStore(keys_dir).add("RS256")  # its own key: the console may stage more
    public_key = folder / "public.pem"
    public_key.write_bytes(public_pem(key.private_key))
    dbs, drop = _databases(folder)
    stop.callback(drop)

    auth_port, calls_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{auth_port}"
    calls_url = f"http://127.0.0.1:{calls_port}"

    # The schemas, then the in-process auth app the tests use to register people.
    auth_app = create_auth(auth_config(dbs, keys_dir, AUTH_ISSUER=issuer))
    with auth_app.app_context():
        from auth_server.schema import upgrade

        upgrade()

    def dispose_auth() -> None:
        with auth_app.app_context():
            auth_app.extensions["sqlalchemy"].session.remove()
            auth_app.extensions["sqlalchemy"].engine.dispose()

    stop.callback(dispose_auth)
    call_app = create_calls(call_config(dbs, public_key))
    with call_app.app_context():
        from call_api.schema import upgrade as upgrade_calls

        upgrade_calls()
        call_app.extensions["sqlalchemy"].session.remove()
        call_app.extensions["sqlalchemy"].engine.dispose()

    operator = make_user(auth_app, "operator", "operator-password", "admin")
    with auth_app.app_context():
        # The call pages' client, registered as auth_server.demo.ensure_calls_web_client does.
        pages = create_client(
            name=CALLS_WEB_NAME,
            redirect_uris=[f"{calls_url}/calls/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope="call admin",
            client_id=CALLS_WEB_CLIENT,
            allow_admin_for_users=True,
        )
        pages_secret = pages.client_secret
    assert pages_secret is not None
    app_client = make_client(auth_app, APP_NAME, redirect_uris=[f"{issuer}/test"])
    machine: dict[str, Any] = {
        "redirect_uris": [],
        "grant_types": ("client_credentials",),
        "response_types": (),
    }
    admin_client = make_client(auth_app, "Operations script", scope="admin", **machine)
    dialer = make_client(auth_app, "Simulator dialer", scope="dialer", **machine)

    auth = stop.enter_context(
        run_service(
            "auth_server",
            auth_env(dbs.auth_url, str(keys_dir), issuer, AUDIENCE),
            port=auth_port,
            workers=1,
            threads=8,
        )
    )
    api_env = {
        **call_env(dbs.calls_url, issuer, AUDIENCE, jwks_url=f"{issuer}/.well-known/jwks.json"),
        "CALL_WEB_CLIENT_ID": CALLS_WEB_CLIENT,
        "CALL_WEB_CLIENT_SECRET": pages_secret,
        "CALL_WEB_URL": calls_url,
        "CALL_SECRET_KEY": secrets.token_urlsafe(32),
        "CALL_REVOCATION_POLL_INTERVAL": "1",
        "CALL_MAX_ONGOING_DEFAULT": "10",
        "CALL_WEBHOOK_POLL_INTERVAL": "0.2",
    }
    calls = stop.enter_context(
        run_service("call_api", api_env, port=calls_port, workers=1, threads=8)
    )

    receiver = Receiver("hooks")
    stop.callback(receiver.close)
    procs = Procs()
    stop.callback(procs.stop_all)
    stack = Stack(auth, calls, auth_app, receiver, procs, operator, app_client, admin_client)
    stop.callback(stack.http.close)
    r = stack.http.put(
        f"{calls.url}/admin/clients/{app_client.client_id}/webhook",
        json={"url": receiver.url, "rotate_secret": True},
        headers=stack.admin_headers(),
        timeout=TIMEOUT,
    )
    assert r.status_code in (200, 201), r.text
    receiver.secret = str(r.json()["secret"])

    start_worker(procs, api_env, "pages-worker")
    sim_env = {
        **api_env,
        "DIALER_CLIENT_ID": dialer.client_id,
        "DIALER_CLIENT_SECRET": str(dialer.client_secret),
        "AUTH_ISSUER": issuer,
        "CALL_API_URL": calls.url,
        "SIMULATOR_RING_SECONDS": str(RING_SECONDS),
        "SIMULATOR_TALK_SECONDS": str(TALK_SECONDS),
    }
    start_simulator(procs, sim_env, "pages-simulator", max_calls=20, wait=1)
    stop.callback(stack.keep_logs)  # first thing at stop time: the logs, for CI's artifacts
    return stack


def shared_stack() -> Stack:
    """The stack, started on first use (see ``stack``)."""
    if "stack" not in _shared:
        stop = ExitStack()
        try:
            _shared["stack"] = _start(stop)
        except BaseException:
            stop.close()
            raise
        _shared["stop"] = stop
    stack: Stack = _shared["stack"]
    return stack


def stop_shared_stack() -> None:
    stop: ExitStack | None = _shared.pop("stop", None)
    _shared.pop("stack", None)
    if stop is not None:
        stop.close()


def _needed_later(request: pytest.FixtureRequest) -> bool:
    """Whether a test collected after this module's also uses the stack (under xdist, a
    test of another worker may count: the stack then lives to the end of the session)."""
    items = request.session.items
    prefix = request.node.nodeid + "::"
    mine = [i for i, item in enumerate(items) if item.nodeid.startswith(prefix)]
    later = items[max(mine) + 1 :] if mine else []
    return any("stack" in getattr(item, "fixturenames", ()) for item in later)


def launch_browser() -> Iterator[Browser]:
    """For a module's ``browser`` fixture: one headless Chromium (Debian's; never a
    downloaded one); each test opens its own contexts (cookies)."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} not found: apt-get install chromium")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:  # pragma: no cover
        unavailable("the playwright Python package is not installed (dev extras)")
    expect.set_options(timeout=TIMEOUT_MS)  # expect()'s own default is 5 s
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def use_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """For a module's ``stack`` fixture (which takes ``browser`` first: without Chromium
    the test is skipped before any server starts): the running stack, shared by the
    modules that use it, started by the first, stopped after the last (or when the
    session ends)."""
    request.config.add_cleanup(stop_shared_stack)
    started = shared_stack()
    try:
        yield started
    finally:
        if not _needed_later(request):
            stop_shared_stack()


# --- pages -----------------------------------------------------------------------------------


class Problems:
    """What the browser reports that no page should cause: script errors, CSP violations,
    console errors, and HTTP errors other than those a test expects."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.seen.append(f"script error: {error}"))
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.seen.append(f"console: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.seen.append(f"HTTP {response.status} {response.url}")

    def unexpected(self, *allowed: str) -> list[str]:
        """The problems whose text contains none of ``allowed`` (a status, a path)."""
        return [p for p in self.seen if not any(a in p for a in allowed)]


def new_page(browser: Browser, width: int = 1024, height: int = 768) -> Page:
    context = browser.new_context(
        viewport={"width": width, "height": height}, color_scheme="light", locale="en-US"
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    _problems[id(page)] = Problems(page)
    return page


_problems: dict[int, Problems] = {}


def problems(page: Page) -> Problems:
    """The problems seen on a page made by ``new_page``."""
    return _problems[id(page)]


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


def shot(page: Page, name: str, doc: str | None = None) -> None:
    """A screenshot in tests/artifacts/pages/ (kept by CI); ``doc``: also the README's
    docs/screenshots/<doc> when UPDATE_SCREENSHOTS=1."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    if doc and UPDATE_SCREENSHOTS:
        DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOC_SCREENSHOTS / doc), full_page=True)


def sign_in(page: Page, user: UserInfo) -> None:
    """On the auth server's login page: fill the form by its labels and submit it."""
    assert path_of(page) == "/auth/login", page.url
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def open_auth_page(page: Page, stack: Stack, path: str, user: UserInfo) -> None:
    """``path`` on the auth server, signing in first if the browser is not yet."""
    page.goto(stack.auth.url + path)
    if path_of(page) == "/auth/login" and not path.startswith("/auth/login"):
        sign_in(page, user)
    assert page.url == stack.auth.url + path, page.url


def open_calls_page(
    page: Page,
    stack: Stack,
    path: str,
    user: UserInfo,
    on_consent: Callable[[], None] | None = None,
) -> None:
    """``path`` on the call API's pages, signing in through the auth server if needed
    (its login page, then — the first time — its consent page for the call pages, where
    ``on_consent`` runs before Accept)."""
    page.goto(stack.calls.url + path)
    if path_of(page) == "/auth/login":
        sign_in(page, user)
    if path_of(page) == "/auth/grant":
        heading = page.get_by_role("heading", level=1).inner_text()
        assert CALLS_WEB_NAME in heading, heading
        if on_consent is not None:
            on_consent()
        with page.expect_navigation(url=re.compile(re.escape(stack.calls.url))):
            page.get_by_role("button", name="Accept").click()
    target = stack.calls.url + path
    page.wait_for_url(lambda url: url == target)
