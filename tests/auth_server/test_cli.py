"""The ``auth-server`` command line: users, clients (secrets shown once, stored hashed), keys."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from urllib.parse import urlencode

import click
import jwt
import pytest
from sqlalchemy import select

from auth_server.cli import main
from shared.keys import KeyStore
from tests.auth_server.helpers import (
    JSON,
    basic,
    ensure_csrf,
    exchange,
    get_code,
    introspect,
    pkce_params,
    sign_in,
    token_request,
    verify_access_token,
)
from tests.conftest import (
    TEST_REDIRECT,
    ClientInfo,
    UserInfo,
    auth_config,
    make_client,
    make_user,
)


def _stored_client(auth_app, client_id: str):
    from auth_server.extensions import db
    from auth_server.models import Client

    with auth_app.app_context():
        row = db.session.scalar(select(Client).where(Client.client_id == client_id))
        return None if row is None else (row.client_secret, dict(row.client_metadata))


def _create_client(cli, *args: str) -> dict[str, str]:
    result = cli("clients", "create", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- users -----------------------------------------------------------------------------


def test_users_create_reads_the_password_from_stdin(cli, client, web_client):
    """users create NAME --password-stdin prints id+username; the password then signs in."""
    result = cli("users", "create", "bob", "--password-stdin", input="bob-secret-pw\n")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {"id", "username"}
    assert out["username"] == "bob"
    r = sign_in(client, UserInfo(out["id"], "bob", "bob-secret-pw"))
    assert r.status_code == 200
    assert r.json == {"status": "signed_in", "username": "bob"}
    r = sign_in(client, UserInfo(out["id"], "bob", "bob-secret-pw\n"))
    assert r.status_code == 401


def test_users_create_needs_password_stdin(cli):
    """Without --password-stdin the command refuses (usage error), creating nobody."""
    result = cli("users", "create", "carol")
    assert result.exit_code == 2
    assert "--password-stdin" in result.output
    assert (
        cli("users", "create", "carol", "--password-stdin", input="carol-password\n").exit_code == 0
    )


def test_users_create_duplicate_username(cli, user):
    """A taken username is an error (exit 1) naming it."""
    result = cli("users", "create", "alice", "--password-stdin", input="another-password\n")
    assert result.exit_code == 1
    assert result.output == "Error: The username 'alice' is taken.\n"


def test_users_create_short_password(cli):
    """A password under 8 characters is refused."""
    result = cli("users", "create", "dave", "--password-stdin", input="short\n")
    assert result.exit_code == 1
    assert result.output == "Error: The password must be at least 8 characters long.\n"


def test_users_create_with_a_role(cli):
    """--role admin makes an admin; without --role a user is a `user` (the help says so)."""
    result = cli(
        "users", "create", "root", "--role", "admin", "--password-stdin", input="root-pw-1\n"
    )
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)) == {"id", "username"}
    assert cli("users", "create", "bob", "--password-stdin", input="bob-pw-12\n").exit_code == 0
    assert json.loads(cli("users", "show", "root").output)["role"] == "admin"
    assert json.loads(cli("users", "show", "bob").output)["role"] == "user"
    help_text = cli("users", "create", "--help").output
    assert "--role ROLE" in help_text and "[default: user]" in help_text


def test_users_create_with_an_unknown_role(cli):
    """An unknown role: one line, exit status 2, nobody created."""
    result = cli(
        "users", "create", "carol", "--role", "root", "--password-stdin", input="pw-123456\n"
    )
    assert (result.exit_code, result.output) == (
        2,
        "Error: Unknown role 'root'; use user or admin.\n",
    )
    assert cli("users", "list").output == ""


def test_users_set_role(cli, user):
    """set-role promotes and demotes; `show` and `list` tell the role."""
    result = cli("users", "set-role", "alice", "admin")
    assert (result.exit_code, result.output) == (0, "role of alice set to admin\n")
    assert json.loads(cli("users", "show", "alice").output)["role"] == "admin"
    assert json.loads(cli("users", "list").output)["role"] == "admin"
    result = cli("users", "set-role", "alice", "user")
    assert (result.exit_code, result.output) == (0, "role of alice set to user\n")
    assert json.loads(cli("users", "show", "alice").output)["role"] == "user"


def test_users_set_role_refusals(cli, user):
    """An unknown role (exit 2) or a missing one (usage error): one line, nothing changes."""
    result = cli("users", "set-role", "alice", "superuser")
    assert (result.exit_code, result.output) == (
        2,
        "Error: Unknown role 'superuser'; use user or admin.\n",
    )
    result = cli("users", "set-role", "alice")
    assert result.exit_code == 2
    assert "Missing argument 'ROLE'" in result.output
    assert json.loads(cli("users", "show", "alice").output)["role"] == "user"


# --- clients ---------------------------------------------------------------------------


def test_clients_create_prints_a_working_secret_stored_hashed(auth_app, cli, client, user):
    """--json prints client_id + client_secret; the secret works; the DB holds only a hash."""
    out = _create_client(cli, "--name", "CLI app", "--redirect-uri", TEST_REDIRECT)
    assert set(out) == {"client_id", "client_secret"}
    stored_secret, meta = _stored_client(auth_app, out["client_id"])
    assert stored_secret.startswith("hmac-sha256$")
    assert out["client_secret"] not in stored_secret
    assert meta["client_name"] == "CLI app"
    assert meta["token_endpoint_auth_method"] == "client_secret_basic"

    app_client = ClientInfo(out["client_id"], out["client_secret"], [TEST_REDIRECT])
    verifier, params = pkce_params(app_client)
    r = exchange(client, app_client, get_code(client, user, params), verifier)
    assert r.status_code == 200, r.json
    assert verify_access_token(client, r.json["access_token"])["client_id"] == out["client_id"]


def test_clients_create_human_output(cli):
    """Without --json the id and secret are printed with a note that the secret is shown once."""
    result = cli("clients", "create", "--name", "Plain", "--redirect-uri", TEST_REDIRECT)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("client_id:")
    assert lines[1].startswith("client_secret:")
    assert lines[1].endswith("(shown once; stored hashed)")


def test_clients_create_public_prints_no_secret(auth_app, cli):
    """--public: only the client_id is printed and no secret (hash) is stored."""
    out = _create_client(cli, "--name", "SPA", "--redirect-uri", TEST_REDIRECT, "--public")
    assert set(out) == {"client_id"}
    stored_secret, meta = _stored_client(auth_app, out["client_id"])
    assert stored_secret is None
    assert meta["token_endpoint_auth_method"] == "none"


def test_clients_create_implicit_needs_response_type_token(auth_app, cli):
    """--grant-type implicit without --response-type token is an error; with it, it works."""
    result = cli(
        "clients",
        "create",
        "--name",
        "Imp",
        "--redirect-uri",
        TEST_REDIRECT,
        "--grant-type",
        "implicit",
    )
    assert result.exit_code == 1
    assert result.output == "Error: The implicit grant needs --response-type token.\n"
    out = _create_client(
        cli,
        "--name",
        "Imp",
        "--redirect-uri",
        TEST_REDIRECT,
        "--grant-type",
        "implicit",
        "--response-type",
        "token",
    )
    _, meta = _stored_client(auth_app, out["client_id"])
    assert (meta["grant_types"], meta["response_types"]) == (["implicit"], ["token"])


def test_clients_create_client_credentials(cli, client):
    """A client_credentials client with --scope admin gets admin tokens with its secret."""
    out = _create_client(
        cli, "--name", "Robot", "--grant-type", "client_credentials", "--scope", "admin"
    )
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(out["client_id"], out["client_secret"]),
    )
    assert r.status_code == 200, r.json
    assert r.json["scope"] == "admin"


def test_clients_create_rejects_bad_input(cli):
    """Unknown grant types and missing redirect URIs are refused with a message."""
    result = cli(
        "clients",
        "create",
        "--name",
        "X",
        "--redirect-uri",
        TEST_REDIRECT,
        "--grant-type",
        "password",
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: Unknown grant type 'password'")
    result = cli("clients", "create", "--name", "X")
    assert result.exit_code == 1
    assert "--redirect-uri" in result.output


def test_clients_list_and_show(auth_app, cli, web_client, admin_client):
    """list prints one JSON line per client; show prints one client, never a secret."""
    result = cli("clients", "list")
    assert result.exit_code == 0, result.output
    listed = [json.loads(line) for line in result.output.splitlines()]
    assert [c["client_id"] for c in listed] == [web_client.client_id, admin_client.client_id]
    expected_web = {
        "client_id": web_client.client_id,
        "client_name": "Web app",
        "public": False,
        "redirect_uris": [TEST_REDIRECT],
        "grant_types": ["authorization_code", "implicit", "refresh_token"],
        "response_types": ["code", "token"],
        "scope": "call",
    }
    assert listed[0] == expected_web
    result = cli("clients", "show", web_client.client_id)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected_web
    assert web_client.client_secret not in result.output
    assert "hmac-sha256" not in result.output


def test_generated_client_id_is_usable_as_a_cli_argument(cli, monkeypatch):
    """A generated client_id never starts with '-', so `clients show ID` cannot read an option."""
    import auth_server.clients as clients_module

    real = clients_module.secrets.token_urlsafe
    draws = iter(["-looks-like-an-option", "plain-id-0123456789"])

    def fake_token_urlsafe(n: int | None = None) -> str:
        return next(draws) if n == 18 else real(n)

    monkeypatch.setattr(clients_module.secrets, "token_urlsafe", fake_token_urlsafe)
    out = _create_client(cli, "--name", "Dash", "--redirect-uri", TEST_REDIRECT)
    monkeypatch.undo()
    assert not out["client_id"].startswith("-")
    result = cli("clients", "show", out["client_id"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["client_name"] == "Dash"


def test_clients_show_unknown(cli):
    """show of an unknown client is an error."""
    result = cli("clients", "show", "nope")
    assert result.exit_code == 1
    assert result.output == "Error: No client 'nope'.\n"


def test_clients_delete(auth_app, cli, client, admin_client):
    """delete removes the client: it can no longer get tokens."""
    assert (
        token_request(client, admin_client, {"grant_type": "client_credentials"}).status_code == 200
    )
    result = cli("clients", "delete", admin_client.client_id)
    assert result.exit_code == 0, result.output
    assert result.output == f"deleted {admin_client.client_id}\n"
    assert _stored_client(auth_app, admin_client.client_id) is None
    r = token_request(client, admin_client, {"grant_type": "client_credentials"})
    assert r.status_code == 401
    assert r.json["error"] == "invalid_client"
    assert cli("clients", "delete", admin_client.client_id).exit_code == 1


def test_clients_delete_with_issued_tokens(auth_app, cli, client, flow, user, web_client):
    """A client with codes, consents and tokens can be deleted (its rows go with it)."""
    flow.token(user, web_client)
    result = cli("clients", "delete", web_client.client_id)
    assert result.exit_code == 0, result.output
    assert _stored_client(auth_app, web_client.client_id) is None


def test_clients_rotate_secret(auth_app, cli, client, admin_client):
    """rotate-secret prints a new secret; the old one stops working, the new one works."""
    result = cli("clients", "rotate-secret", admin_client.client_id)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {"client_id", "client_secret"}
    assert out["client_id"] == admin_client.client_id
    assert out["client_secret"] != admin_client.client_secret
    r = token_request(client, admin_client, {"grant_type": "client_credentials"})
    assert r.status_code == 401
    rotated = ClientInfo(admin_client.client_id, out["client_secret"])
    assert token_request(client, rotated, {"grant_type": "client_credentials"}).status_code == 200
    stored_secret, _ = _stored_client(auth_app, admin_client.client_id)
    assert stored_secret.startswith("hmac-sha256$")
    assert out["client_secret"] not in stored_secret


def test_clients_rotate_secret_of_public_client(auth_app, cli):
    """A public client has no secret to rotate."""
    spa = make_client(auth_app, "SPA", public=True)
    result = cli("clients", "rotate-secret", spa.client_id)
    assert result.exit_code == 1
    assert result.output == "Error: A public client has no secret.\n"


# --- keys ------------------------------------------------------------------------------


@pytest.fixture
def keyed_app(auth_app, databases, tmp_path, monkeypatch):
    """An auth app signing with its own keys folder (the session-wide keys stay untouched)."""
    from auth_server import create_app

    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")  # restored after the CLI runs

    keys = tmp_path / "keys"
    KeyStore(keys).add("RS256")
    app = create_app(auth_config(databases, keys))
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        app.extensions["sqlalchemy"].engine.dispose()


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_keys_rotate_and_retire(auth_app, keyed_app, admin_client):
    """rotate: new tokens get the new kid, the old key stays in the JWKS; retire removes it."""
    client = keyed_app.test_client()
    runner = keyed_app.test_cli_runner()

    def new_token() -> str:
        r = token_request(client, admin_client, {"grant_type": "client_credentials"})
        assert r.status_code == 200, r.json
        return str(r.json["access_token"])

    def published() -> list[str]:
        return [k["kid"] for k in client.get("/.well-known/jwks.json").json["keys"]]

    old_token = new_token()
    old_kid = _kid(old_token)
    assert published() == [old_kid]

    result = runner.invoke(main, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    rotated = json.loads(result.output)
    assert rotated["alg"] == "RS256"
    new_kid = rotated["kid"]
    assert new_kid != old_kid

    token = new_token()
    assert _kid(token) == new_kid
    assert sorted(published()) == sorted([old_kid, new_kid])
    verify_access_token(client, old_token)  # still verifiable with the published old key
    verify_access_token(client, token)

    result = runner.invoke(main, ["keys", "list"])
    assert result.exit_code == 0, result.output
    listed = {
        json.loads(line)["kid"]: json.loads(line)["current"] for line in result.output.splitlines()
    }
    assert listed == {old_kid: False, new_kid: True}

    result = runner.invoke(main, ["keys", "retire", new_kid])
    assert result.exit_code == 1
    assert "current signing key" in result.output

    result = runner.invoke(main, ["keys", "retire", old_kid])
    assert result.exit_code == 0, result.output
    assert result.output == f"retired {old_kid}\n"
    assert published() == [new_kid]
    r = introspect(client, old_token, admin_client)
    assert (r.status_code, r.json) == (200, {"active": False})
    assert introspect(client, token, admin_client).json["active"] is True

    result = runner.invoke(main, ["keys", "retire", "no-such-kid"])
    assert result.exit_code == 1
    assert "no key no-such-kid" in result.output


def test_keys_retire_reads_a_dash_prefixed_kid_as_the_argument(keyed_app):
    """RFC 7638 kids may start with '-': retire treats it as the kid, not an unknown option."""
    result = keyed_app.test_cli_runner().invoke(main, ["keys", "retire", "-dash-kid"])
    assert result.exit_code == 1
    assert "no key -dash-kid" in result.output


def test_keys_rotate_stage_publishes_then_activate_switches(auth_app, keyed_app, admin_client):
    """--stage: the new key is in the JWKS at once but signs only after `keys activate`."""
    client = keyed_app.test_client()
    runner = keyed_app.test_cli_runner()

    def kid_of_new_token() -> str:
        r = token_request(client, admin_client, {"grant_type": "client_credentials"})
        assert r.status_code == 200, r.json
        return _kid(r.json["access_token"])

    old_kid = kid_of_new_token()
    result = runner.invoke(main, ["keys", "rotate", "--stage"])
    assert result.exit_code == 0, result.output
    staged = json.loads(result.output)
    assert staged["current"] is False
    jwks = client.get("/.well-known/jwks.json").json["keys"]
    assert sorted(k["kid"] for k in jwks) == sorted([old_kid, staged["kid"]])
    assert kid_of_new_token() == old_kid

    result = runner.invoke(main, ["keys", "activate", staged["kid"]])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"kid": staged["kid"], "current": True}
    assert kid_of_new_token() == staged["kid"]

    result = runner.invoke(main, ["keys", "activate", "no-such-kid"])
    assert result.exit_code == 1
    assert "no key no-such-kid" in result.output


def test_cli_works_in_production_before_the_first_key(databases, tmp_path, monkeypatch):
    """`keys rotate` must be able to create the first key where serving would refuse."""
    from auth_server import create_app
    from auth_server.cli import _create_app
    from shared.config import ConfigError

    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("AUTH_SECRET_KEY", "s" * 40)
    monkeypatch.setenv("AUTH_DATABASE_URL", "postgresql://clickcall@127.0.0.1/none")
    monkeypatch.setenv("AUTH_ISSUER", "https://auth.example.com")
    monkeypatch.setenv("AUTH_GENERATE_KEYS", "false")
    monkeypatch.setenv("AUTH_KEYS_DIR", str(tmp_path / "keys"))
    with pytest.raises(ConfigError, match="AUTH_KEYS_DIR"):
        create_app()
    app = _create_app()
    result = app.test_cli_runner().invoke(main, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["current"] is True
    create_app()  # now a serving process starts


# --- operating from the CLI: users list/show/disable/enable/set-password/delete ----------

ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"
DISABLED = "This account is disabled; ask the operator to enable it."


def _refresh(client, app_client: ClientInfo, refresh_token: str):
    return token_request(
        client, app_client, {"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


def _authorize_json(client, app_client: ClientInfo, redirect_uri: str | None = None):
    verifier, params = pkce_params(app_client)
    if redirect_uri is not None:
        params["redirect_uri"] = redirect_uri
    return client.get("/oauth/auth?" + urlencode(params), headers=JSON)


def test_users_list_prints_one_json_line_per_user_by_username(cli, auth_app):
    """list: {id, username, role, disabled, created_at} per user, sorted by username."""
    bob = make_user(auth_app, "bob", "bob-password")
    alice = make_user(auth_app, "alice", "alice-password")
    assert cli("users", "disable", "bob").exit_code == 0
    result = cli("users", "list")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    for row in rows:
        assert re.fullmatch(ISO_UTC, row.pop("created_at")), row
    assert rows == [
        {"id": alice.id, "username": "alice", "role": "user", "disabled": False},
        {"id": bob.id, "username": "bob", "role": "user", "disabled": True},
    ]
    assert "password" not in result.output


def test_users_show(cli, flow, user, web_client):
    """show: the user, when disabled, and the clients they authorized; no password hash."""
    flow.token(user, web_client)
    result = cli("users", "show", "alice")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert re.fullmatch(ISO_UTC, shown.pop("created_at"))
    assert shown == {
        "id": user.id,
        "username": "alice",
        "role": "user",
        "disabled": False,
        "name": None,
        "email": None,
        "email_verified": False,
        "disabled_at": None,
        "authorized_clients": [web_client.client_id],
    }
    assert result.output.startswith('{\n  "id"')
    assert "password" not in result.output


def test_users_disable_stops_login_refresh_and_consent(cli, client, flow, user, web_client):
    """disable: the password no longer signs in (clear message), the refresh token and the
    consent are revoked, an open login session ends, introspection sees the token inactive."""
    tokens = flow.token(user, web_client)  # leaves `client` signed in as alice
    result = cli("users", "disable", "alice")
    assert result.exit_code == 0, result.output
    assert result.output == "disabled alice (refresh tokens, codes and consents revoked)\n"

    r = sign_in(client, user)
    assert r.status_code == 401
    assert (r.json["error"], r.json["error_description"]) == ("account_disabled", DISABLED)
    r = client.post(
        "/auth/login",
        data={"username": "alice", "password": user.password, "csrf_token": ensure_csrf(client)},
    )
    assert r.status_code == 401
    assert "This account is disabled" in r.get_data(as_text=True)
    # A wrong password is told apart from nothing: the usual message.
    r = sign_in(client, UserInfo(user.id, "alice", "wrong-password"))
    assert (r.status_code, r.json["error_description"]) == (401, "Invalid username or password.")

    r = _refresh(client, web_client, tokens["refresh_token"])
    assert (r.status_code, r.json["error"]) == (400, "invalid_grant")
    r = introspect(client, tokens["access_token"], web_client)
    assert (r.status_code, r.json) == (200, {"active": False})

    # The session signed in before the disable no longer counts: back to the login page.
    r = client.get("/oauth/auth?" + urlencode(pkce_params(web_client)[1]))
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/auth/login")

    shown = json.loads(cli("users", "show", "alice").output)
    assert shown["disabled"] is True
    assert re.fullmatch(ISO_UTC, shown["disabled_at"])
    assert shown["authorized_clients"] == []
    # Disabling twice is fine.
    assert cli("users", "disable", "alice").exit_code == 0


def test_users_disable_revokes_unused_authorization_codes(cli, client, user, web_client):
    """A code issued before the disable cannot be exchanged afterwards."""
    verifier, params = pkce_params(web_client)
    code = get_code(client, user, params)
    assert cli("users", "disable", "alice").exit_code == 0
    r = exchange(client, web_client, code, verifier)
    assert (r.status_code, r.json["error"]) == (400, "invalid_grant")


def test_users_enable_restores_login_but_not_what_was_revoked(cli, client, flow, user, web_client):
    """enable: the user signs in again; the old refresh token stays revoked and the app asks
    for consent again."""
    tokens = flow.token(user, web_client)
    assert cli("users", "disable", "alice").exit_code == 0
    result = cli("users", "enable", "alice")
    assert result.exit_code == 0, result.output
    assert result.output == "enabled alice\n"

    r = sign_in(client, user)
    assert (r.status_code, r.json) == (200, {"status": "signed_in", "username": "alice"})
    r = _refresh(client, web_client, tokens["refresh_token"])
    assert (r.status_code, r.json["error"]) == (400, "invalid_grant")
    r = client.get("/oauth/auth?" + urlencode(pkce_params(web_client)[1]))
    assert r.status_code == 303
    assert r.headers["Location"].startswith("/auth/grant")
    new_tokens = flow.token(user, web_client)
    assert _refresh(client, web_client, new_tokens["refresh_token"]).status_code == 200
    assert json.loads(cli("users", "show", "alice").output)["disabled_at"] is None


def test_users_set_password(cli, client, user):
    """set-password: the new password signs in, the old one no longer does."""
    result = cli("users", "set-password", "alice", "--password-stdin", input="brand-new-pw\n")
    assert result.exit_code == 0, result.output
    assert result.output == "password changed for alice\n"
    assert sign_in(client, user).status_code == 401
    r = sign_in(client, UserInfo(user.id, "alice", "brand-new-pw"))
    assert (r.status_code, r.json) == (200, {"status": "signed_in", "username": "alice"})


def test_users_set_password_refusals(cli, client, user):
    """Without --password-stdin, or with a short password: one line, nothing changes."""
    result = cli("users", "set-password", "alice")
    assert (result.exit_code, result.output) == (
        2,
        "Error: pass --password-stdin and send the password on standard input\n",
    )
    result = cli("users", "set-password", "alice", "--password-stdin", input="short\n")
    assert (result.exit_code, result.output) == (
        1,
        "Error: The password must be at least 8 characters long.\n",
    )
    assert sign_in(client, user).status_code == 200


def test_users_delete(auth_app, cli, client, flow, user, web_client):
    """delete: the user, their tokens, codes and consents are gone; login and refresh fail."""
    from auth_server.extensions import db
    from auth_server.models import AuthorizationCode, Consent, Token

    tokens = flow.token(user, web_client)
    result = cli("users", "delete", "alice")
    assert result.exit_code == 0, result.output
    assert result.output == "deleted alice\n"

    r = sign_in(client, user)
    assert (r.status_code, r.json["error_description"]) == (401, "Invalid username or password.")
    r = _refresh(client, web_client, tokens["refresh_token"])
    assert (r.status_code, r.json["error"]) == (400, "invalid_grant")
    with auth_app.app_context():
        for model in (Token, AuthorizationCode, Consent):
            assert db.session.scalars(select(model)).all() == []
    assert cli("users", "list").output == ""
    # The name is free again.
    assert cli("users", "create", "alice", "--password-stdin", input="another-pw\n").exit_code == 0


@pytest.mark.parametrize(
    "command",
    [
        ("users", "show"),
        ("users", "disable"),
        ("users", "enable"),
        ("users", "delete"),
        ("users", "set-password"),
        ("users", "set-role"),
    ],
)
def test_users_commands_on_an_unknown_user(cli, user, command):
    """An unknown username: one line naming it, exit status 1."""
    extra = {"set-password": ("--password-stdin",), "set-role": ("admin",)}.get(command[1], ())
    result = cli(*command, "nobody", *extra, input="a-good-password\n")
    assert (result.exit_code, result.output) == (1, "Error: No user named 'nobody'.\n")


def test_users_commands_read_a_dash_prefixed_username_as_the_argument(auth_app, cli):
    """A username may start with '-': it is USERNAME, not an unknown option."""
    make_user(auth_app, "-dash", "dash-password")
    result = cli("users", "show", "-dash")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["username"] == "-dash"
    assert cli("users", "disable", "-dash").output == (
        "disabled -dash (refresh tokens, codes and consents revoked)\n"
    )


# --- clients update ----------------------------------------------------------------------

NEW_REDIRECT = "https://app.example.com/cb"


def test_clients_update_redirect_uris(cli, client, user, web_client):
    """--redirect-uri replaces the registered URIs: the old one is refused at /oauth/auth
    (error page, no redirect), the new one works; nothing else changes."""
    result = cli("clients", "update", web_client.client_id, "--redirect-uri", NEW_REDIRECT)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "client_id": web_client.client_id,
        "client_name": "Web app",
        "public": False,
        "redirect_uris": [NEW_REDIRECT],
        "grant_types": ["authorization_code", "implicit", "refresh_token"],
        "response_types": ["code", "token"],
        "scope": "call",
    }
    assert cli("clients", "show", web_client.client_id).output == result.output

    r = _authorize_json(client, web_client)  # the old TEST_REDIRECT
    assert (r.status_code, r.json["error"]) == (400, "invalid_request")
    assert "Location" not in r.headers

    moved = ClientInfo(web_client.client_id, web_client.client_secret, [NEW_REDIRECT])
    verifier, params = pkce_params(moved)
    r = exchange(client, moved, get_code(client, user, params), verifier)
    assert r.status_code == 200, r.json
    # The secret is unchanged.
    assert r.json["token_type"] == "Bearer"


def test_clients_update_changes_only_the_given_options(cli, web_client, admin_client):
    """--name alone keeps the rest; --scope and --grant-type replace theirs."""
    result = cli("clients", "update", web_client.client_id, "--name", "Renamed")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["client_name"] == "Renamed"
    assert shown["redirect_uris"] == [TEST_REDIRECT]
    assert shown["grant_types"] == ["authorization_code", "implicit", "refresh_token"]

    result = cli(
        "clients",
        "update",
        web_client.client_id,
        "--grant-type",
        "authorization_code",
        "--scope",
        "call admin",
        "--allow-admin-for-users",
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    # Without --response-type, the response types follow the grants (as in create).
    assert (shown["grant_types"], shown["response_types"]) == (["authorization_code"], ["code"])
    assert (shown["scope"], shown["client_name"]) == ("call admin", "Renamed")


def test_clients_update_takes_effect_at_the_token_endpoint(cli, client, admin_client):
    """Narrowing a client's grant types refuses the removed grant at once."""
    ok = token_request(client, admin_client, {"grant_type": "client_credentials"})
    assert ok.status_code == 200
    result = cli(
        "clients",
        "update",
        admin_client.client_id,
        "--grant-type",
        "authorization_code",
        "--redirect-uri",
        NEW_REDIRECT,
        "--allow-admin-for-users",  # the admin client's scope with a browser grant
    )
    assert result.exit_code == 0, result.output
    r = token_request(client, admin_client, {"grant_type": "client_credentials"})
    assert (r.status_code, r.json["error"]) == (400, "unauthorized_client")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--grant-type", "password"), "Unknown grant type 'password'; use one of "),
        (("--grant-type", "implicit"), "The implicit grant needs --response-type token."),
        (
            ("--scope", "root"),
            "Unknown scope 'root'; use one of call, admin, introspect, dialer, openid, "
            "profile, email.",
        ),
        (
            ("--response-type", "code id_token"),
            "Unknown response type 'code id_token'; use one of code, token, id_token, "
            "'id_token token'.",
        ),
        (("--response-type", "id_token"), "The id_token response types need the openid scope"),
        (("--redirect-uri", "javascript:alert(1)"), "Redirect URI 'javascript:alert(1)' "),
        (("--redirect-uri", "https://x.example/cb#frag"), "must not contain a fragment"),
        (("--name", "  "), "A client needs a name."),
    ],
)
def test_clients_update_is_checked_as_create(cli, web_client, args, message):
    """Every value is checked as in `create`; a refusal is one line and changes nothing."""
    before = cli("clients", "show", web_client.client_id).output
    result = cli("clients", "update", web_client.client_id, *args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert message in result.output
    assert cli("clients", "show", web_client.client_id).output == before


def test_clients_update_public_client_cannot_get_client_credentials(auth_app, cli):
    """A public client stays public, so client_credentials is refused for it as at creation."""
    spa = make_client(auth_app, "SPA", public=True)
    result = cli("clients", "update", spa.client_id, "--grant-type", "client_credentials")
    assert (result.exit_code, result.output) == (
        1,
        "Error: A public client cannot use client_credentials.\n",
    )


def test_clients_update_unknown_client(cli):
    """An unknown client id: one line, exit status 1."""
    result = cli("clients", "update", "nope", "--name", "X")
    assert (result.exit_code, result.output) == (1, "Error: No client 'nope'.\n")


def test_clients_update_refuses_plain_http_in_production(auth_app, cli, web_client):
    """In production a non-loopback http:// redirect URI is refused, loopback ones are not."""
    auth_app.config["APP_ENV"] = "production"
    try:
        result = cli(
            "clients", "update", web_client.client_id, "--redirect-uri", "http://x.example/cb"
        )
        assert result.exit_code == 1
        assert "only allowed for loopback in production" in result.output
        for uri in ("http://127.0.0.1:9/cb", "http://[::1]:9/cb", "http://localhost/cb"):
            result = cli("clients", "update", web_client.client_id, "--redirect-uri", uri)
            assert result.exit_code == 0, result.output
    finally:
        auth_app.config["APP_ENV"] = "development"


# --- --version and help ------------------------------------------------------------------


def test_version_is_clickcalls(cli):
    """--version prints ClickCall's version (package metadata), not Flask's."""
    result = cli("--version")
    assert result.exit_code == 0, result.output
    assert result.output == f"auth-server (ClickCall) {version('clickcall')}\n"


def _own_commands(group, prefix=()):
    """Every command of ours (not Flask's run/shell/routes nor Flask-Migrate's/Limiter's)."""
    foreign = {"run", "shell", "routes", "db", "limiter"}
    for name, command in sorted(group.commands.items()):
        if not prefix and name in foreign:
            continue
        if isinstance(command, click.Group):
            yield from _own_commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def assert_options_state_their_defaults(group, minimum: int) -> None:
    checked = 0
    for path, command in [((), group), *_own_commands(group)]:
        assert command.help, path
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in ("help", "version"):
                continue
            text = param.help or ""
            # "[default: …]" written out, or shown by click, or an option one must give.
            states = param.show_default or "default:" in text or "Required" in text
            states = states or param.required
            assert param.help and states, (path, param.name, param.help)
            checked += 1
    assert checked >= minimum  # the walk saw the options (3 are FlaskGroup's own)


def test_every_option_states_its_default():
    """Every option of every auth-server command has help that states its default."""
    assert_options_state_their_defaults(main, minimum=15)
