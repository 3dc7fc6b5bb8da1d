"""The ``auth-server`` command line: users, clients (secrets shown once, stored hashed), keys."""

from __future__ import annotations

import json

import jwt
import pytest
from sqlalchemy import select

from auth_server.cli import main
from shared.keys import KeyStore
from tests.auth_server.helpers import (
    basic,
    exchange,
    get_code,
    introspect,
    pkce_params,
    sign_in,
    token_request,
    verify_access_token,
)
from tests.conftest import TEST_REDIRECT, ClientInfo, UserInfo, auth_config, make_client


@pytest.fixture
def cli(auth_app, monkeypatch):
    # FlaskGroup sets FLASK_RUN_FROM_CLI in os.environ; undo it after the test.
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")
    runner = auth_app.test_cli_runner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), input=input)

    return invoke


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
