"""Secrets at rest, hostile input (SQL metacharacters, control characters, invalid UTF-8,
oversized bodies) and the production configuration's refusal of insecure defaults."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from urllib.parse import quote, urlencode, urlsplit

import pytest
import sqlalchemy as sa

from shared.config import ConfigError
from tests.conftest import TEST_REDIRECT, make_client, pkce_pair, query_of

JSON = {"Accept": "application/json"}
FORM = "application/x-www-form-urlencoded"

HOSTILE = {
    "sql_quote": "' OR '1'='1",
    "sql_comment": "admin'--",
    "sql_stacked": "x'; DROP TABLE users; --",
    "sql_like_wildcards": "%_%",
    "double_quote_backslash": '"\\',
    "nul": "a\x00b",
    "crlf": "a\r\nLocation: https://evil.com",
    "escape_sequence": "\x1b[31mred\x1b[0m",
    "del": "a\x7f",
    "unicode_rtl": "\u202eevil",
    "long": "x" * 5000,
}
# Percent-encoded bytes that are not valid UTF-8.
NON_UTF8 = ["%FF%FE", "%C0%AF", "%ED%A0%80", "a%80b"]


def body(**fields: str) -> bytes:
    return urlencode(fields).encode()


def raw_body(parts: dict[str, str]) -> bytes:
    """Form body with values already percent-encoded (to smuggle invalid UTF-8)."""
    return "&".join(f"{k}={v}" for k, v in parts.items()).encode()


def csrf_of(client) -> str:
    client.get("/auth/login", headers=JSON)
    with client.session_transaction() as sess:
        return str(sess["csrf"])


def assert_no_redirect_elsewhere(r, registered: str = TEST_REDIRECT) -> None:
    loc = r.headers.get("Location")
    if loc is not None:
        parts = urlsplit(loc)
        assert loc.startswith("/auth/") or (
            f"{parts.scheme}://{parts.netloc}{parts.path}" == registered
        ), loc


# --- secrets at rest ----------------------------------------------------------------------


def all_rows_text(app) -> str:
    from auth_server.extensions import db

    out = []
    with app.app_context():
        with db.engine.connect() as conn:
            for table in db.metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    out.append(repr(tuple(row)))
    return "\n".join(out)


def test_secrets_at_rest_client_secret_is_hmac_sha256(auth_app, web_client):
    from auth_server.extensions import db
    from auth_server.models import Client

    with auth_app.app_context():
        stored = db.session.scalar(
            sa.select(Client.client_secret).where(Client.client_id == web_client.client_id)
        )
    assert re.fullmatch(r"hmac-sha256\$[0-9a-f]{32}\$[0-9a-f]{64}", stored), stored
    assert web_client.client_secret not in stored
    # two clients with the same secret do not share a stored value (per-client salt)
    with auth_app.app_context():
        from auth_server.clients import create_client

        a = create_client(name="A", redirect_uris=[TEST_REDIRECT], client_secret="same-secret")
        b = create_client(name="B", redirect_uris=[TEST_REDIRECT], client_secret="same-secret")
        assert a.client.client_secret != b.client.client_secret


def test_secrets_at_rest_codes_and_refresh_tokens_only_as_sha256(
    auth_app, client, flow, user, web_client
):
    from auth_server.extensions import db
    from auth_server.models import AuthorizationCode, Token

    result = flow.authorize(user, web_client)
    code = result["code"]
    r = client.post(
        "/oauth/token",
        headers=web_client.basic(),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": TEST_REDIRECT,
            "code_verifier": flow.verifier,
        },
    )
    assert r.status_code == 200
    tokens = r.json
    with auth_app.app_context():
        code_hashes = db.session.scalars(sa.select(AuthorizationCode.code_hash)).all()
        refresh_hashes = db.session.scalars(sa.select(Token.refresh_token_hash)).all()
    assert code_hashes == [hashlib.sha256(code.encode()).hexdigest()]
    assert refresh_hashes == [hashlib.sha256(tokens["refresh_token"].encode()).hexdigest()]
    dump = all_rows_text(auth_app)
    for secret in (
        code,
        tokens["refresh_token"],
        tokens["access_token"],
        web_client.client_secret,
        user.password,
        flow.verifier,
    ):
        assert secret not in dump


@pytest.mark.real_password_hash
def test_secrets_at_rest_password_hash_is_not_plaintext(auth_app, user):
    from werkzeug.security import check_password_hash

    from auth_server.extensions import db
    from auth_server.models import User

    with auth_app.app_context():
        stored = db.session.scalar(sa.select(User.password_hash).where(User.id == user.id))
    assert user.password not in stored
    assert stored.split(":")[0] in ("scrypt", "pbkdf2")
    assert check_password_hash(stored, user.password)


def test_secrets_are_not_logged(auth_app, client, flow, user, web_client):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger("clickcall"), logging.getLogger()]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        tokens = flow.token(user, web_client)
        client.post(
            "/auth/login",
            data={
                "username": user.username,
                "password": "wrong-pass",
                "csrf_token": csrf_of(client),
            },
        )
        client.get("/test?code=secret-code-value&access_token=secret-at")
        client.post(
            "/oauth/token",
            headers=web_client.basic(),
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    text = "\n".join(
        f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in records if r.levelno >= logging.INFO
    )
    assert records, "expected request log lines"
    for secret in (
        user.password,
        "wrong-pass",
        web_client.client_secret,
        tokens["access_token"],
        tokens["refresh_token"],
        "secret-code-value",
        "secret-at",
    ):
        assert secret not in text


# --- hostile input: login -----------------------------------------------------------------
# One test per attack surface; the hostile values are looped inside (the message names the
# value that failed), which keeps the catalogue fast on both databases.


def test_hostile_input_username_and_password_at_login(client, user):
    token = csrf_of(client)
    for name, value in HOSTILE.items():
        for data in (
            {"username": value, "password": "whatever1"},
            {"username": user.username, "password": value},
            {"username": value, "password": value},
        ):
            r = client.post("/auth/login", data={**data, "csrf_token": token}, headers=JSON)
            assert r.status_code == 401, (name, data, r.status_code, r.get_data(as_text=True))
            assert r.json["error"] == "invalid_credentials", name
    # The HTML page escapes the echoed username.
    for name, value in (("markup", "<script>alert(1)</script>"), *HOSTILE.items()):
        r = client.post(
            "/auth/login", data={"username": value, "password": "x", "csrf_token": token}
        )
        assert r.status_code == 401, name
        assert "<script>" not in r.get_data(as_text=True).lower(), name
    with client.session_transaction() as sess:
        assert "uid" not in sess


def test_hostile_input_sql_injection_cannot_sign_in(client, user):
    token = csrf_of(client)
    for name, pw in (
        (f"{user.username}'--", "x"),
        (user.username, "' OR '1'='1"),
        ("' OR 1=1--", "' OR 1=1--"),
        (f"{user.username}%", user.password),
        ("_" * len(user.username), user.password),
        # Case and width are normalised on purpose (USERNAME and alice are one user), but a
        # look-alike from another script is another name: Cyrillic "а" for Latin "a".
        (user.username.replace("a", "\u0430"), user.password),
    ):
        r = client.post(
            "/auth/login",
            data={"username": name, "password": pw, "csrf_token": token},
            headers=JSON,
        )
        assert r.status_code == 401, (name, pw)
    with client.session_transaction() as sess:
        assert "uid" not in sess


def test_hostile_input_non_utf8_bytes_at_login(client, user):
    token = csrf_of(client)
    for raw in NON_UTF8:
        for parts in (
            {"username": raw, "password": "whatever1"},
            {"username": user.username, "password": raw},
        ):
            r = client.post(
                "/auth/login",
                data=raw_body({**parts, "csrf_token": token}),
                content_type=FORM,
                headers=JSON,
            )
            assert r.status_code == 401, (parts, r.status_code, r.get_data(as_text=True))
        # non-UTF-8 in the CSRF token itself: a CSRF failure, not a crash
        r = client.post(
            "/auth/login",
            data=raw_body({"username": "a", "password": "b", "csrf_token": raw}),
            content_type=FORM,
            headers=JSON,
        )
        assert r.status_code == 400, raw
        assert r.json["error"] == "invalid_request"


def test_hostile_input_raw_undecodable_body_at_login(client, user):
    """Raw (not percent-encoded) non-UTF-8 bytes: the form cannot be read at all, so the
    CSRF check refuses it (400), and nobody is signed in."""
    token = csrf_of(client)
    data = b"username=\xff\xfe\xfd&password=\xc0\xaf&csrf_token=" + token.encode()
    r = client.post("/auth/login", data=data, content_type=FORM, headers=JSON)
    assert r.status_code == 400
    assert r.json["error"] == "invalid_request"
    with client.session_transaction() as sess:
        assert "uid" not in sess


# --- hostile input: authorization endpoint ------------------------------------------------


def code_request(web_client, **overrides: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    return {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": TEST_REDIRECT,
        "scope": "call",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **overrides,
    }


def assert_error_redirect(r, error: str, label: object) -> None:
    """Refused through the registered redirect URI only, with the state, and no code."""
    assert r.status_code == 302, (label, r.status_code, r.get_data(as_text=True))
    loc = r.headers["Location"]
    assert loc.startswith(TEST_REDIRECT + "?"), (label, loc)
    params = query_of(loc)
    assert params["error"] == error, (label, params)
    assert params["state"] == "s", label
    assert "code" not in params, label


def assert_error_page(r, error: str, label: object) -> None:
    assert r.status_code == 400, (label, r.status_code, r.get_data(as_text=True))
    assert "Location" not in r.headers, label
    assert r.json["error"] == error, (label, r.json)


def test_hostile_input_client_id_at_authorization_endpoint(client, web_client):
    for name, value in HOSTILE.items():
        q = code_request(web_client, client_id=value)
        r = client.get("/oauth/auth?" + urlencode(q), headers=JSON)
        assert_error_page(r, "invalid_client", name)


def test_hostile_input_redirect_uri_at_authorization_endpoint(client, flow, user, web_client):
    flow.authorize(user, web_client)  # signed in and consented
    for name, value in HOSTILE.items():
        for uri in (value, TEST_REDIRECT + value):
            q = code_request(web_client, redirect_uri=uri)
            r = client.get("/oauth/auth?" + urlencode(q), headers=JSON)
            assert_error_page(r, "invalid_request", (name, uri))
            r = client.get("/oauth/auth?" + urlencode(q))  # HTML error page
            assert r.status_code == 400 and "Location" not in r.headers, name


def test_hostile_input_scope_at_authorization_endpoint(client, flow, user, web_client):
    flow.authorize(user, web_client)
    for name, value in HOSTILE.items():
        r = client.get("/oauth/auth?" + urlencode(code_request(web_client, scope=value)))
        assert_error_redirect(r, "invalid_scope", name)


def test_hostile_input_state_at_authorization_endpoint(client, flow, user, web_client):
    flow.authorize(user, web_client)
    for name, value in HOSTILE.items():
        r = client.get("/oauth/auth?" + urlencode(code_request(web_client, state=value)))
        assert r.status_code == 302, (name, r.get_data(as_text=True))
        loc = r.headers["Location"]
        assert loc.startswith(TEST_REDIRECT + "?"), name
        assert "\r" not in loc and "\n" not in loc, name  # no header splitting
        assert query_of(loc)["state"] == value, name
        assert "code" in query_of(loc), name


def echoable(value: str) -> bool:
    """Whether Authlib can echo the (whitespace-split) value in an error description: only
    %x20-21 / %x23-5B / %x5D-7E are allowed there (RFC 6749 §4.1.2.1)."""
    text = " ".join(value.split())
    return all(ch == " " or (0x21 <= ord(ch) <= 0x7E and ch not in '"\\') for ch in text)


def test_hostile_input_response_type_at_authorization_endpoint(client, flow, user, web_client):
    """An unknown response_type goes back to the registered URI as unsupported_response_type;
    when it holds characters an error description may not carry, the server's own error
    page says invalid_request instead. Never a code, never another URI, never a 500."""
    flow.authorize(user, web_client)
    for name, value in HOSTILE.items():
        r = client.get(
            "/oauth/auth?" + urlencode(code_request(web_client, response_type=value)),
            headers=JSON,
        )
        if echoable(value):
            assert_error_redirect(r, "unsupported_response_type", name)
        else:
            assert_error_page(r, "invalid_request", name)


def test_hostile_input_pkce_parameters_at_authorization_endpoint(client, flow, user, web_client):
    flow.authorize(user, web_client)
    for name, value in HOSTILE.items():
        for field in ("code_challenge", "code_challenge_method"):
            q = code_request(web_client, **{field: value})
            r = client.get("/oauth/auth?" + urlencode(q), headers=JSON)
            assert_error_redirect(r, "invalid_request", (name, field))


def test_hostile_input_non_utf8_bytes_at_authorization_endpoint(client, flow, user, web_client):
    """Invalid percent-encoded UTF-8 is kept as its literal text by the server."""
    flow.authorize(user, web_client)
    base = code_request(
        web_client,
        client_id=quote(web_client.client_id),
        redirect_uri=quote(TEST_REDIRECT, safe=""),
    )
    for raw in NON_UTF8:

        def get(field: str, raw: str = raw):
            query = "&".join(f"{k}={raw if k == field else v}" for k, v in base.items())
            return client.get("/oauth/auth?" + query, headers=JSON)

        assert_error_page(get("client_id"), "invalid_client", raw)
        assert_error_page(get("redirect_uri"), "invalid_request", raw)
        assert_error_redirect(get("scope"), "invalid_scope", raw)
        assert_error_redirect(get("response_type"), "unsupported_response_type", raw)
        assert_error_redirect(get("code_challenge"), "invalid_request", raw)
        r = get("state")  # an opaque value: passed back as received
        assert r.status_code == 302, raw
        assert query_of(r.headers["Location"])["state"] == raw
        assert "code" in query_of(r.headers["Location"])


# --- hostile input: token endpoint --------------------------------------------------------


def test_hostile_input_at_token_endpoint(client, auth_app, web_client, admin_client):
    native = make_client(auth_app, "Native", public=True)
    for name, value in HOSTILE.items():
        cases = [
            # (form, headers, status, error)
            (
                {
                    "grant_type": "authorization_code",
                    "code": "c",
                    "client_id": value,
                    "redirect_uri": TEST_REDIRECT,
                    "code_verifier": "v" * 43,
                },
                {},
                400,
                "invalid_client",
            ),
            (
                {"grant_type": "client_credentials", "client_id": value, "client_secret": value},
                {},
                400,
                "invalid_client",
            ),
            (
                {"grant_type": "authorization_code", "code": value, "redirect_uri": TEST_REDIRECT},
                web_client.basic(),
                400,
                "invalid_grant",
            ),
            (
                {
                    "grant_type": "authorization_code",
                    "code": value,
                    "client_id": native.client_id,
                    "redirect_uri": value,
                    "code_verifier": "v" * 43,
                },
                {},
                400,
                "invalid_grant",
            ),
            (
                {"grant_type": "refresh_token", "refresh_token": value},
                web_client.basic(),
                400,
                "invalid_grant",
            ),
            (
                {"grant_type": "client_credentials", "scope": value},
                admin_client.basic(),
                400,
                "invalid_scope",
            ),
            ({"grant_type": value}, web_client.basic(), 400, "unsupported_grant_type"),
        ]
        for form, headers, status, error in cases:
            r = client.post("/oauth/token", data=form, headers=headers)
            assert r.status_code == status, (name, form, r.status_code, r.get_data(as_text=True))
            assert r.json["error"] == error, (name, form, r.json)
        # Basic auth whose id/secret are hostile (form-urlencoded per RFC 6749 §2.3.1)
        basic = base64.b64encode(f"{quote(value, safe='')}:{quote(value, safe='')}".encode())
        r = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic " + basic.decode()},
        )
        assert r.status_code == 401 and r.json["error"] == "invalid_client", name


def test_hostile_input_at_revocation_and_introspection(client, web_client):
    for name, value in HOSTILE.items():
        r = client.post("/oauth/revoke", data={"token": value}, headers=web_client.basic())
        assert r.status_code == 200, (name, r.get_data(as_text=True))
        r = client.post("/oauth/introspect", data={"token": value}, headers=web_client.basic())
        assert r.status_code == 200, (name, r.get_data(as_text=True))
        assert r.json == {"active": False}, name
        # An unknown token_type_hint: Authlib answers unsupported_token_type with 401 (its
        # error class derives from ForbiddenError); RFC 7009 §2.1 would rather ignore it.
        for path in ("/oauth/revoke", "/oauth/introspect"):
            r = client.post(
                path, data={"token": "t", "token_type_hint": value}, headers=web_client.basic()
            )
            assert r.status_code == 401, (name, path, r.get_data(as_text=True))
            assert r.json["error"] == "unsupported_token_type", (name, path)


def test_hostile_input_non_utf8_bytes_at_token_endpoint(client, web_client):
    for raw in NON_UTF8:
        for parts, error in (
            (
                {"grant_type": "authorization_code", "code": raw, "redirect_uri": "x"},
                "invalid_grant",
            ),
            ({"grant_type": "refresh_token", "refresh_token": raw}, "invalid_grant"),
            ({"grant_type": raw}, "unsupported_grant_type"),
        ):
            r = client.post(
                "/oauth/token", data=raw_body(parts), content_type=FORM, headers=web_client.basic()
            )
            assert r.status_code == 400, (parts, r.get_data(as_text=True))
            assert r.json["error"] == error, parts
        r = client.post(
            "/oauth/token",
            content_type=FORM,
            data=raw_body(
                {"grant_type": "client_credentials", "client_id": raw, "client_secret": raw}
            ),
        )
        assert r.status_code == 400 and r.json["error"] == "invalid_client", raw


MALFORMED_BASIC = {
    "non_utf8": "Basic " + base64.b64encode(b"\xff\xfe:\xc0\xaf").decode(),
    "no_colon": "Basic " + base64.b64encode(b"no-colon").decode(),
    "not_base64": "Basic !!!not-base64!!!",
    "empty": "Basic ",
    "nul": "Basic " + base64.b64encode(b"a\x00b:c\x00d").decode(),
    "other_scheme": "Bearer abc",
}


def test_hostile_input_malformed_basic_auth_at_token_endpoint(client, web_client):
    for name, header in MALFORMED_BASIC.items():
        for path, form in (
            ("/oauth/token", {"grant_type": "client_credentials"}),
            ("/oauth/introspect", {"token": "t"}),
            ("/oauth/revoke", {"token": "t"}),
        ):
            r = client.post(path, data=form, headers={"Authorization": header})
            assert r.status_code == 401, (name, path, r.get_data(as_text=True))
            assert r.json["error"] == "invalid_client", (name, path)


# --- oversized bodies ---------------------------------------------------------------------

BIG = 64 * 1024 + 1


def test_oversized_body_at_token_endpoint_is_413(client, web_client):
    r = client.post(
        "/oauth/token",
        headers=web_client.basic(),
        data={"grant_type": "client_credentials", "scope": "call", "pad": "x" * BIG},
    )
    assert r.status_code == 413
    assert r.json["error"] == "payload_too_large"


def test_oversized_body_at_login_is_413(client):
    token = csrf_of(client)
    r = client.post(
        "/auth/login",
        headers=JSON,
        data={"username": "a", "password": "x" * BIG, "csrf_token": token},
    )
    assert r.status_code == 413
    assert r.json["error"] == "payload_too_large"


def test_oversized_body_at_login_is_413_with_rate_limiting(databases, keys_dir):
    from auth_server import create_app
    from tests.conftest import _prepare, auth_config

    app = create_app(
        auth_config(databases, keys_dir, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://")
    )
    _prepare(app, "auth", databases.auth_url)
    try:
        client = app.test_client()
        token = csrf_of(client)
        r = client.post(
            "/auth/login",
            headers=JSON,
            data={"username": "u" * BIG, "password": "x", "csrf_token": token},
        )
        assert r.status_code == 413
        assert r.json["error"] == "payload_too_large"
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


@pytest.mark.parametrize("path", ["/oauth/revoke", "/oauth/introspect", "/auth/grant"])
def test_oversized_body_elsewhere_is_413(client, web_client, path):
    r = client.post(path, headers={**web_client.basic(), **JSON}, data={"token": "x" * BIG})
    assert r.status_code == 413


# --- production configuration -------------------------------------------------------------

PRODUCTION_ENV = {
    "APP_ENV": "production",
    "AUTH_SECRET_KEY": "k" * 48,
    "AUTH_DATABASE_URL": "postgresql://clickcall:pw-not-shown@db.internal:5432/auth",
    "AUTH_ISSUER": "https://auth.example.com",
    "AUTH_GENERATE_KEYS": "false",
}


@pytest.fixture
def production_env(monkeypatch, keys_dir):
    for name in (
        "AUTH_SECRET_KEY",
        "AUTH_DATABASE_URL",
        "AUTH_ISSUER",
        "AUTH_GENERATE_KEYS",
        "AUTH_KEYS_DIR",
        "SESSION_COOKIE_SECURE",
        "CORS_ORIGINS",
        "TRUSTED_PROXIES",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTH_KEYS_DIR", str(keys_dir))
    return monkeypatch


def test_production_config_secure_settings_start(production_env):
    from auth_server import create_app

    app = create_app()
    assert app.config["APP_ENV"] == "production"
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["AUTH_GENERATE_KEYS"] is False


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTH_SECRET_KEY", None),
        ("AUTH_SECRET_KEY", ""),
        ("AUTH_DATABASE_URL", None),
        ("AUTH_DATABASE_URL", "sqlite:///var/auth.db"),
        ("AUTH_DATABASE_URL", "sqlite://"),
        ("AUTH_ISSUER", None),
        ("AUTH_ISSUER", "http://auth.example.com"),
        ("AUTH_GENERATE_KEYS", None),
        ("AUTH_GENERATE_KEYS", "true"),
    ],
    ids=lambda v: "unset" if v is None else (v or "empty"),
)
def test_production_config_refuses_insecure_default(production_env, variable, value):
    from auth_server import create_app

    if value is None:
        production_env.delenv(variable)
    else:
        production_env.setenv(variable, value)
    if variable == "AUTH_GENERATE_KEYS" and value is None:
        # unset means "false" in production (the default follows APP_ENV): it starts
        app = create_app()
        assert app.config["AUTH_GENERATE_KEYS"] is False
        return
    with pytest.raises(ConfigError) as info:
        create_app()
    message = str(info.value)
    assert variable in message
    assert "APP_ENV=production" in message
    assert "pw-not-shown" not in message


def test_production_config_refuses_empty_keys_dir(production_env, tmp_path):
    from auth_server import create_app

    production_env.setenv("AUTH_KEYS_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="AUTH_KEYS_DIR"):
        create_app()
    assert list(tmp_path.iterdir()) == []  # and no key was generated on the fly


def test_production_config_test_mapping_cannot_hide_a_missing_secret(production_env):
    """create_app reads the environment, then the mapping: the checks run on the result."""
    from auth_server import create_app

    production_env.delenv("AUTH_SECRET_KEY")
    with pytest.raises(ConfigError, match="AUTH_SECRET_KEY"):
        create_app({"CORS_ORIGINS": []})
    with pytest.raises(ConfigError, match="AUTH_DATABASE_URL"):
        create_app({"SECRET_KEY": "s" * 48, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
