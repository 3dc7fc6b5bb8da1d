"""The ``dialer`` scope belongs to a phone system's own client, never to a person.

Only a ``client_credentials``-only client may be registered with it (CLI and service), such
a client gets a token carrying it at ``POST /oauth/token``, and no browser flow ever grants
it to a user: the browser clients cannot be registered for it (``invalid_scope`` at the
authorization endpoint), and even a browser client whose stored registration names it (say,
edited in the database) gets it for nobody, since no role allows it.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from tests.auth_server.helpers import (
    JSON,
    auth_params,
    exchange,
    get_code,
    pkce_params,
    token_request,
    verify_access_token,
)
from tests.conftest import (
    ISSUER,
    TEST_REDIRECT,
    ClientInfo,
    fragment_of,
    make_client,
    make_user,
    query_of,
)

REFUSED = (
    "Error: The 'dialer' scope is for a phone system's own client: register it with "
    "--grant-type client_credentials only.\n"
)


@pytest.fixture
def dialer_client(auth_app) -> ClientInfo:
    return make_client(
        auth_app,
        "Dialer",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="dialer",
    )


@pytest.mark.parametrize(
    "grants",
    [
        ("--grant-type", "authorization_code"),
        ("--grant-type", "implicit", "--response-type", "token"),
        ("--grant-type", "client_credentials", "--grant-type", "authorization_code"),
        ("--grant-type", "client_credentials", "--grant-type", "refresh_token"),
    ],
)
def test_registering_dialer_with_another_grant_is_refused(cli, grants):
    result = cli(
        "clients", "create", "--name", "Phone", "--redirect-uri", TEST_REDIRECT,
        *grants, "--scope", "dialer",
    )  # fmt: skip
    assert (result.exit_code, result.output) == (1, REFUSED)
    assert cli("clients", "list").output == ""


def test_a_browser_client_cannot_be_updated_to_dialer(cli, web_client):
    result = cli("clients", "update", web_client.client_id, "--scope", "call dialer")
    assert (result.exit_code, result.output) == (1, REFUSED)


def test_client_credentials_client_gets_a_dialer_token(cli, client):
    result = cli(
        "clients", "create", "--name", "Dialer", "--grant-type", "client_credentials",
        "--scope", "dialer", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    registered = json.loads(result.output)
    shown = json.loads(cli("clients", "show", registered["client_id"]).output)
    assert (shown["scope"], shown["grant_types"]) == ("dialer", ["client_credentials"])
    dialer = ClientInfo(registered["client_id"], registered["client_secret"])
    for scope in ({"scope": "dialer"}, {}):  # asked for, or the registered one
        r = token_request(client, dialer, {"grant_type": "client_credentials", **scope})
        assert r.status_code == 200, r.get_data(as_text=True)
        assert (r.json["token_type"], r.json["scope"]) == ("Bearer", "dialer")
        assert "refresh_token" not in r.json
        claims = verify_access_token(client, r.json["access_token"])
        assert (claims["scope"], claims["sub"], claims["client_id"]) == (
            "dialer",
            dialer.client_id,
            dialer.client_id,
        )


def test_a_dialer_client_gets_nothing_else(client, dialer_client):
    for scope in ("call", "admin", "dialer call"):
        r = token_request(
            client, dialer_client, {"grant_type": "client_credentials", "scope": scope}
        )
        assert r.status_code == 400
        asked = scope.split()[-1]
        assert r.json == {
            "error": "invalid_scope",
            "error_description": f"This client may not ask for the scope '{asked}'; it is "
            "registered for dialer.",
        }


@pytest.mark.parametrize("response_type", ["code", "token"])
def test_a_browser_client_asking_for_dialer_gets_invalid_scope(client, web_client, response_type):
    r = client.get(
        "/oauth/auth?" + urlencode(auth_params(web_client, response_type, scope="call dialer")),
        headers=JSON,
    )
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith(TEST_REDIRECT)
    result = fragment_of(location) if response_type == "token" else query_of(location)
    assert result == {
        "error": "invalid_scope",
        "error_description": "This client may not ask for the scope 'dialer'; it is "
        "registered for call.",
        "iss": ISSUER,
        "state": "st4te",
    }


def _registered_anyway(auth_app, app_client: ClientInfo, scope: str) -> None:
    """Write ``scope`` into the client's stored registration, past the registration rules."""
    from auth_server.clients import get_client
    from auth_server.extensions import db

    with auth_app.app_context():
        row = get_client(app_client.client_id)
        row.set_client_metadata({**row.client_metadata, "scope": scope})
        db.session.commit()


@pytest.mark.parametrize("role", ["user", "admin"])
def test_no_role_is_ever_granted_dialer_through_a_browser(auth_app, client, role):
    """Even through a client registered (in the database) for it, a person asking for
    ``call dialer`` gets ``call`` alone, and asking for ``dialer`` alone is refused."""
    web = make_client(auth_app, "Web app", allow_admin_for_users=True, scope="call admin")
    _registered_anyway(auth_app, web, "call admin dialer")
    person = make_user(auth_app, role=role)

    verifier, params = pkce_params(web, scope="call dialer")
    r = exchange(client, web, get_code(client, person, params), verifier)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["scope"] == "call"
    assert verify_access_token(client, r.json["access_token"])["scope"] == "call"

    allowed = (
        "call, openid, profile and email"
        if role == "user"
        else ("call, admin, openid, profile and email")
    )
    r = client.get("/oauth/auth?" + urlencode(auth_params(web, scope="dialer")), headers=JSON)
    assert r.status_code == 302
    assert query_of(r.headers["Location"]) == {
        "error": "invalid_scope",
        "error_description": f"The signed-in user's role ({role}) allows none of the "
        f"requested scopes (dialer); it allows {allowed}.",
        "state": "st4te",
        "iss": ISSUER,
    }


def test_make_run_gives_the_simulator_client_a_new_secret_at_each_start(auth_app, client):
    """``manage.py`` hands the simulator ``ensure_simulator_client()``'s secret: the client
    is created once (client_credentials, dialer) and its secret replaced at every start."""
    from auth_server.demo import ensure_simulator_client

    with auth_app.app_context():
        first = ensure_simulator_client()
        second = ensure_simulator_client()
    assert first[0] == second[0] == "simulator-dialer"
    assert first[1] != second[1] and len(second[1]) >= 43
    cc = {"grant_type": "client_credentials"}
    r = token_request(client, ClientInfo(*first), cc)
    assert (r.status_code, r.json["error"]) == (401, "invalid_client")
    r = token_request(client, ClientInfo(*second), cc)
    assert (r.status_code, r.json["scope"]) == (200, "dialer")


def test_production_refuses_the_simulator_client(auth_app):
    from auth_server.demo import ensure_simulator_client
    from shared.config import ConfigError

    auth_app.config["APP_ENV"] = "production"
    with auth_app.app_context(), pytest.raises(ConfigError) as refused:
        ensure_simulator_client()
    assert str(refused.value) == "APP_ENV=production refuses to create demo accounts"
