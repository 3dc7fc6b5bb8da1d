"""A body over ``MAX_CONTENT_LENGTH`` is refused with 413 whatever its framing; no input is
ever silently truncated.

Attack: under gunicorn a ``Transfer-Encoding: chunked`` body has no ``Content-Length`` for
Werkzeug to check up front, and Werkzeug's stream for it stopped reading at the limit without
looking further: a 200 MB chunked ``POST /rest/call`` was cut to its first 16 KiB, parsed as
a form and processed (201), and the token endpoint likewise issued a token from the first
64 KiB of a longer body. These tests drive real gunicorn processes (``tests/e2e/servers.py``)
with a raw socket, sending chunks until the server answers (or a 20 MB cap), and check the
status and that nothing was created. A chunked body of exactly the limit is still processed.
"""

from __future__ import annotations

import base64
import http.client
import json
import select
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import func
from sqlalchemy import select as sql_select

from tests.call_api.helpers import count_calls
from tests.conftest import AUDIENCE, ISSUER
from tests.e2e.servers import auth_env, call_env, run_service

LIMIT = 16 * 1024  # MAX_CONTENT_LENGTH given to both servers here
HUGE = 20 * 1024 * 1024  # what the attacker offers; the server must answer long before
PIECE = 64 * 1024
TOO_LARGE = {"error": "payload_too_large", "error_description": "The request body is too large."}


@dataclass
class Answer:
    status: int
    body: bytes
    sent: int  # body bytes the client got to send before the server answered


def post(
    url: str,
    path: str,
    headers: dict[str, str],
    head: bytes,
    total: int,
    chunked: bool = True,
) -> Answer:
    """POST ``head`` padded with ``x`` to ``total`` bytes, in 64 KiB pieces (chunked, or under
    a ``Content-Length`` of ``total``), stopping as soon as the server has answered."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=20)
    try:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
        lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", framing, "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        sent = 0
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered (or closed): stop sending, as a client would
            piece = head if sent == 0 else b"x" * min(PIECE, total - sent)
            piece = piece[: total - sent]
            frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Answer(response.status, response.read(), sent)
    finally:
        sock.close()


def form_head(text: str) -> bytes:
    """A form whose last field is the padding: cut anywhere, it still parses."""
    return (text + "&pad=").encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


def assert_too_large(answer: Answer) -> None:
    assert answer.status == 413, (answer.status, answer.body[:300])
    assert json.loads(answer.body) == TOO_LARGE
    assert answer.sent < HUGE, "the server read the whole body before answering"


def test_call_api_refuses_an_oversized_body_whatever_its_framing(
    call_app, databases, public_key_file, user_token
):
    env = {
        **call_env(databases.calls_url, ISSUER, AUDIENCE, public_key_file=str(public_key_file)),
        "MAX_CONTENT_LENGTH": str(LIMIT),
    }
    auth = {"Authorization": f"Bearer {user_token}"}
    form = form_head("number=%2B14155550123")
    as_json = b'{"number": "+14155550123", "pad": "' + b"x" * LIMIT + b'"}'
    with run_service("call_api", env) as api:
        # 20 MB chunked, as a form or as JSON: refused, never cut to its first 16 KiB.
        assert_too_large(post(api.url, "/rest/call", {**auth, **FORM}, form, HUGE))
        assert_too_large(post(api.url, "/rest/call", {**auth, **JSON}, as_json, HUGE))
        # One byte over the limit is over it; under a Content-Length as well.
        assert_too_large(post(api.url, "/rest/call", {**auth, **FORM}, form, LIMIT + 1))
        assert_too_large(post(api.url, "/rest/call", {**auth, **FORM}, form, HUGE, chunked=False))
        assert count_calls(call_app) == 0
        # Exactly the limit, chunked: read to its end and processed.
        ok = post(api.url, "/rest/call", {**auth, **FORM}, form, LIMIT)
        assert ok.status == 201, ok.body[:300]
        assert json.loads(ok.body)["number"] == "+14155550123"
    assert count_calls(call_app) == 1


def count_tokens(auth_app) -> int:
    from auth_server.models import Token

    db = auth_app.extensions["sqlalchemy"]
    with auth_app.app_context():
        return int(db.session.scalar(sql_select(func.count()).select_from(Token)) or 0)


def test_token_endpoint_refuses_an_oversized_body_whatever_its_framing(
    auth_app, admin_client, databases, keys_dir
):
    env = {
        **auth_env(databases.auth_url, str(keys_dir), ISSUER, AUDIENCE),
        "MAX_CONTENT_LENGTH": str(LIMIT),
    }
    basic = base64.b64encode(f"{admin_client.client_id}:{admin_client.client_secret}".encode())
    headers = {**FORM, "Authorization": "Basic " + basic.decode()}
    form = form_head("grant_type=client_credentials&scope=admin")
    with run_service("auth_server", env) as auth:
        assert_too_large(post(auth.url, "/oauth/token", headers, form, HUGE))
        assert_too_large(post(auth.url, "/oauth/token", headers, form, LIMIT + 1))
        assert_too_large(post(auth.url, "/oauth/token", headers, form, HUGE, chunked=False))
        assert count_tokens(auth_app) == 0
        ok = post(auth.url, "/oauth/token", headers, form, LIMIT)
        assert ok.status == 200, ok.body[:300]
        assert json.loads(ok.body)["scope"] == "admin"
    assert count_tokens(auth_app) == 1
