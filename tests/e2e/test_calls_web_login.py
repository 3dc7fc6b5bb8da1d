"""The call pages' sign-in as real processes: both services under gunicorn, a plain HTTP
client as the browser following every redirect, reading the forms the pages serve —
``/calls`` → the auth server's login and consent → ``/calls/callback`` → ``/calls``; then
a hang-up from the page, and a sign-out."""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import pytest
import requests

from tests.call_api.helpers import NUMBER
from tests.call_api.web_helpers import SECRET_KEY
from tests.conftest import AUDIENCE, make_client
from tests.e2e.servers import auth_env, call_env, free_port, run_service

pytestmark = pytest.mark.slow  # real gunicorn processes

FORM = re.compile(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def first_form(page: str) -> tuple[str, dict[str, str]]:
    """The first POST form of a page: its action and hidden fields."""
    match = FORM.search(page)
    assert match, page[:1000]
    fields = {name: html.unescape(value) for name, value in HIDDEN.findall(match.group(2))}
    return html.unescape(match.group(1)), fields


def test_a_person_signs_in_to_the_call_pages_through_the_auth_server(
    auth_app, call_app, user, databases, keys_dir
):
    auth_port, call_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{auth_port}"
    calls_url = f"http://127.0.0.1:{call_port}"
    pages = make_client(
        auth_app,
        "Call API pages",
        redirect_uris=[f"{calls_url}/calls/callback"],
        grant_types=("authorization_code", "refresh_token"),
        response_types=("code",),
        scope="call admin",
        allow_admin_for_users=True,
    )
    env = {
        **call_env(
            databases.calls_url, issuer, AUDIENCE, jwks_url=f"{issuer}/.well-known/jwks.json"
        ),
        "CALL_WEB_CLIENT_ID": pages.client_id,
        "CALL_WEB_CLIENT_SECRET": pages.client_secret or "",
        "CALL_WEB_URL": calls_url,
        "CALL_SECRET_KEY": SECRET_KEY,
    }
    with (
        run_service(
            "auth_server",
            auth_env(databases.auth_url, str(keys_dir), issuer, AUDIENCE),
            port=auth_port,
        ),
        run_service("call_api", env, port=call_port),
    ):
        browser = requests.Session()
        r = browser.get(f"{calls_url}/calls", allow_redirects=False, timeout=10)
        assert r.status_code == 302
        assert r.headers["Location"] == "/calls/login?next=/calls"
        # Follow the redirects to the auth server's login form.
        r = browser.get(urljoin(calls_url, r.headers["Location"]), timeout=10)
        assert r.url.startswith(f"{issuer}/auth/login"), r.url
        action, fields = first_form(r.text)
        r = browser.post(
            urljoin(r.url, action),
            data={**fields, "username": user.username, "password": user.password},
            timeout=10,
        )
        # The consent page; accepting sends the browser back to the call pages, signed in.
        assert r.url.startswith(f"{issuer}/auth/grant"), r.url
        action, fields = first_form(r.text)
        r = browser.post(urljoin(r.url, action), data={**fields, "grant": "true"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.url == f"{calls_url}/calls"
        assert "Signed in as <strong>alice</strong>" in r.text
        assert "You have no live calls." in r.text
        cookie = browser.cookies.get("clickcall_calls_session")
        assert cookie and "." not in cookie

        # A call from another app shows on the page, and is hung up from it.
        from call_api import calls

        with call_app.app_context():
            policy = calls.Policy.from_config(call_app.config)
            made = calls.as_dict(calls.start_call(user.id, "some-app", NUMBER, policy).call)
        live = browser.get(f"{calls_url}/calls/live.json", timeout=10).json()
        assert [c["token_call"] for c in live["calls"]] == [made["token_call"]]
        page = browser.get(f"{calls_url}/calls/{made['token_call']}/hangup", timeout=10)
        action, fields = first_form(page.text[page.text.index("<h1") :])
        r = browser.post(urljoin(page.url, action), data=fields, timeout=10)
        assert r.url == f"{calls_url}/calls?ended={made['token_call']}"
        assert f"The call to {NUMBER} has ended (canceled)." in r.text
        with call_app.app_context():
            after = calls.as_dict(calls.get_call(made["token_call"], policy))
        assert (after["state"], after["end_reason"]) == ("canceled", "hangup")

        # Sign out: the session ends, and the pages are closed again.
        action, fields = first_form(r.text)
        assert action == "/calls/logout"
        r = browser.post(urljoin(r.url, action), data=fields, timeout=10)
        assert r.url == f"{calls_url}/calls/signed-out"
        r = browser.get(f"{calls_url}/calls", allow_redirects=False, timeout=10)
        assert r.status_code == 302
