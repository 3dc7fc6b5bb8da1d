"""Signing in to the call API's pages (``call_api.web``) in tests, through the real flow.

The auth server is the in-process ``auth_app``: the pages' OAuth requests (metadata, token,
revocation) go through their ``requests.Session``, which ``forward_to`` mounts with an
adapter that hands each request to ``auth_app``'s test client. The browser is two test
clients (one per site, each keeping its cookies): ``Pages.sign_in`` follows the redirects
from ``/calls/login`` through the auth server's login and consent back to
``/calls/callback``.

Typical use (see tests/call_api/test_calls_pages.py)::

    pages_client = register_pages_client(auth_app)
    app = make_call_app(**pages_config(pages_client))
    forward_to(app, auth_app)
    alice = Pages(app, auth_app)
    alice.sign_in(user)
    alice.get("/calls")
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask
from flask.testing import FlaskClient
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from tests.conftest import ISSUER, ClientInfo, Flow, UserInfo, make_client, query_of

CALLBACK = "http://127.0.0.1:8889/calls/callback"
SECRET_KEY = "test-call-secret-key-not-for-production-0123456789"
SESSION_COOKIE = "clickcall_calls_session"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def register_pages_client(auth_app: Flask, redirect_uri: str = CALLBACK) -> ClientInfo:
    """The pages' client at the auth server, as ``make run``'s demo registers it."""
    return make_client(
        auth_app,
        "Call API pages",
        redirect_uris=[redirect_uri],
        grant_types=("authorization_code", "refresh_token"),
        response_types=("code",),
        scope="call admin",
        allow_admin_for_users=True,
    )


def pages_config(client: ClientInfo, **extra: Any) -> dict[str, Any]:
    return {
        "CALL_WEB_CLIENT_ID": client.client_id,
        "CALL_WEB_CLIENT_SECRET": client.client_secret,
        "CALL_SECRET_KEY": SECRET_KEY,
        **extra,
    }


class FlaskAdapter(BaseAdapter):
    """A ``requests`` transport that answers from a Flask app's test client."""

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.app = app
        self.sent: list[requests.PreparedRequest] = []
        self.down = False  # True: every request fails as if the auth server were away

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        if self.down:
            raise requests.ConnectionError("auth server down (test)")
        url = urlsplit(request.url or "")
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        answer = self.app.test_client().open(
            url.path,
            method=request.method or "GET",
            query_string=url.query,
            headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"},
            data=body,
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response._content = answer.get_data()
        response.headers = CaseInsensitiveDict(dict(answer.headers))
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        return None


def forward_to(app: Flask, auth_app: Flask) -> FlaskAdapter:
    """Route ``app``'s requests to the auth server (``ISSUER``) into ``auth_app``."""
    adapter = FlaskAdapter(auth_app)
    session = requests.Session()
    session.mount(ISSUER, adapter)
    app.extensions["clickcall_web_http"] = session
    return adapter


class Pages:
    """One browser on the call API's pages (and the auth server's, for signing in)."""

    def __init__(self, app: Flask, auth_app: Flask) -> None:
        self.app = app
        self.calls: FlaskClient = app.test_client()
        self.auth: FlaskClient = auth_app.test_client()

    def start(self, next_url: str = "/calls") -> Any:
        return self.calls.get("/calls/login", query_string={"next": next_url})

    def authorize(self, user: UserInfo, location: str, consent: bool = True) -> str:
        """From the authorization URL to where the auth server sends the browser back."""
        params = query_of(location)
        flow = Flow(self.auth)
        r = self.auth.get(urlsplit(location).path, query_string=params)
        for _ in range(4):
            if r.status_code not in (302, 303):
                raise AssertionError((r.status_code, r.get_data(as_text=True)[:500]))
            target = r.headers["Location"]
            if target.startswith("/auth/login"):
                r = flow.login(user, **params)
            elif target.startswith("/auth/grant"):
                data = {
                    **params,
                    "grant": "true" if consent else "false",
                    "csrf_token": flow.csrf(),
                }
                r = self.auth.post("/auth/grant", data=data)
            else:
                return str(target)
        raise AssertionError("too many redirects at the auth server")

    def sign_in(self, user: UserInfo, next_url: str = "/calls", consent: bool = True) -> Any:
        """The whole dance; returns the callback's response (a redirect to ``next_url``)."""
        r = self.start(next_url)
        assert r.status_code == 302, r.get_data(as_text=True)
        back = self.authorize(user, r.headers["Location"], consent)
        assert urlsplit(back).path == "/calls/callback", back
        return self.calls.get("/calls/callback", query_string=query_of(back))

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.calls.get(path, **kwargs)

    def csrf(self, page: str = "/calls") -> str:
        match = CSRF_FIELD.search(self.calls.get(page).get_data(as_text=True))
        assert match, "no CSRF field on " + page
        return match.group(1)

    def post(self, path: str, data: dict[str, str] | None = None, csrf: bool = True) -> Any:
        form = dict(data or {})
        if csrf and "csrf_token" not in form:
            form["csrf_token"] = self.csrf()
        return self.calls.post(path, data=form)

    def session_cookie(self) -> str | None:
        cookie = self.calls.get_cookie(SESSION_COOKIE)
        return cookie.value if cookie is not None else None


def session_rows(app: Flask) -> list[dict[str, Any]]:
    """Every ``web_sessions`` row, with its tokens decrypted (``access``, ``refresh``)."""
    from sqlalchemy import select

    from call_api.models import WebSession
    from call_api.web.session import decrypt

    db = app.extensions["sqlalchemy"]
    with app.test_request_context():
        rows = []
        for row in db.session.scalars(select(WebSession)):
            rows.append(
                {
                    "id": row.id,
                    "secret_hash": row.secret_hash,
                    "subject": row.subject,
                    "username": row.username,
                    "scope": row.scope,
                    "stored_access": row.access_token,
                    "stored_refresh": row.refresh_token,
                    "access": decrypt(row.access_token),
                    "refresh": decrypt(row.refresh_token) if row.refresh_token else None,
                    "csrf": row.csrf_secret,
                    "access_expires_at": row.access_expires_at,
                    "expires_at": row.expires_at,
                }
            )
        db.session.remove()
        return rows


def set_session_columns(app: Flask, **values: Any) -> None:
    """Change every ``web_sessions`` row (say ``access_expires_at`` into the past)."""
    from sqlalchemy import update

    from call_api.models import WebSession

    db = app.extensions["sqlalchemy"]
    with app.app_context():
        db.session.execute(update(WebSession).values(**values))
        db.session.commit()
