"""``admin`` is a privilege of a person, not of an app (security round two, §1).

The attack: a browser client registered with ``--scope "call admin"``; any ordinary user who
signs in through it got an ``admin`` token and read every user's calls at the call API. Now
users have roles (``user``, ``admin``): through the browser flows and their refreshes a user
is granted only the scopes their role allows (``rules.ROLE_SCOPES``), the consent page offers
nothing more, registering such a client needs ``--allow-admin-for-users``, and the right to
introspect any token is the client scope ``introspect``, not a side effect of ``admin``.

A client "registered before roles" is written straight into the database: that is what a
database upgraded from before holds, and what the registration now refuses without the flag.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from tests.auth_server.helpers import (
    HTML,
    JSON,
    ensure_csrf,
    exchange,
    get_code,
    pkce_params,
    sign_in,
    token_request,
    verify_access_token,
)
from tests.conftest import (
    AUDIENCE,
    ISSUER,
    TEST_REDIRECT,
    ClientInfo,
    bearer,
    fragment_of,
    make_client,
    make_user,
    query_of,
)

BROWSER_GRANTS = ("authorization_code", "implicit", "refresh_token")
NEEDS_ADMIN = {
    "error": "insufficient_scope",
    "error_description": "This endpoint needs the 'admin' scope.",
}
USER_MAY_NOT = (
    "The signed-in user's role (user) allows none of the requested scopes (admin); it allows "
    "call, openid, profile and email."
)
REFUSED = (
    "Error: The admin scope with a browser grant (authorization_code or implicit) lets this "
    "app act on every user's calls whenever an admin signs in through it; register admin on a "
    "separate client_credentials client, or pass --allow-admin-for-users if that is intended.\n"
)


def console_registered_before_roles(app) -> ClientInfo:
    """A confidential browser client (code, implicit, refresh) with scope ``call admin``,
    registered without any flag, as was possible before roles."""
    from auth_server.extensions import db
    from auth_server.models import Client

    info = make_client(
        app, "Team console", grant_types=BROWSER_GRANTS, response_types=("code", "token")
    )
    with app.app_context():
        row = db.session.scalar(select(Client).where(Client.client_id == info.client_id))
        row.set_client_metadata({**row.client_metadata, "scope": "call admin"})
        db.session.commit()
    return info


def admin_console(app) -> ClientInfo:
    """The same, registered now, with the explicit flag."""
    return make_client(
        app,
        "Admin console",
        grant_types=BROWSER_GRANTS,
        response_types=("code", "token"),
        scope="call admin",
        allow_admin_for_users=True,
    )


def refresh(client, app_client: ClientInfo, token: str, **extra: str):
    data = {"grant_type": "refresh_token", "refresh_token": token, **extra}
    return token_request(client, app_client, data)


def set_role_in_database(app, user_id: str, role: str) -> None:
    """Change the role without `users set-role` (no revocation): what the issuing code must
    catch by itself, e.g. a demotion racing a refresh."""
    from auth_server.extensions import db
    from auth_server.models import User

    with app.app_context():
        db.session.get(User, user_id).role = role
        db.session.commit()


# --- the attack ------------------------------------------------------------------------


def test_ordinary_user_gets_no_admin_through_a_browser_client_with_admin(
    auth_app, client, api, flow, user
):
    """Code flow, asking for ``call admin``: the token carries ``call`` only (RFC 6749 §3.3:
    the response's ``scope`` says so); the call API's admin interface answers 403, the
    user's own calls still work, and a refresh does not bring admin back."""
    console = console_registered_before_roles(auth_app)
    tokens = flow.token(user, console, scope="call admin")
    # The attack: read another user's calls through the admin interface.
    r = api.get("/admin/users/someone-else", headers=bearer(tokens["access_token"]))
    assert (r.status_code, r.json) == (403, NEEDS_ADMIN)
    r = api.get("/admin/calls/anything", headers=bearer(tokens["access_token"]))
    assert (r.status_code, r.json) == (403, NEEDS_ADMIN)
    assert tokens["scope"] == "call"
    assert verify_access_token(client, tokens["access_token"])["scope"] == "call"
    r = api.get("/rest/call", headers=bearer(tokens["access_token"]))
    assert (r.status_code, r.json) == (200, {"calls": []})

    r = refresh(client, console, tokens["refresh_token"])
    assert r.status_code == 200, r.json
    assert r.json["scope"] == "call"
    assert verify_access_token(client, r.json["access_token"])["scope"] == "call"


def test_ordinary_user_without_a_scope_parameter_gets_no_admin(auth_app, client, user):
    """No ``scope`` asks for the client's whole registration: narrowed the same way."""
    console = console_registered_before_roles(auth_app)
    verifier, params = pkce_params(console)
    del params["scope"]
    r = exchange(client, console, get_code(client, user, params), verifier)
    assert r.status_code == 200, r.json
    assert r.json["scope"] == "call"


def test_ordinary_user_gets_no_admin_through_the_implicit_flow(auth_app, client, api, flow, user):
    """response_type=token: the fragment's token and ``scope`` are ``call`` only."""
    console = console_registered_before_roles(auth_app)
    fragment = flow.authorize(user, console, response_type="token", scope="call admin")
    assert fragment["scope"] == "call"
    token = fragment["access_token"]
    assert verify_access_token(client, token)["scope"] == "call"
    r = api.get(f"/admin/users/{user.id}", headers=bearer(token))
    assert (r.status_code, r.json) == (403, NEEDS_ADMIN)


@pytest.mark.parametrize("response_type", ["code", "token"])
def test_asking_only_for_admin_is_invalid_scope(auth_app, client, user, response_type):
    """Nothing the role allows is left: redirected to the client with ``invalid_scope``, a
    description and the state (the fragment for implicit), at sign-in and once signed in;
    no code or token, and no consent is remembered."""
    from auth_server.extensions import db
    from auth_server.models import AuthorizationCode, Consent, Token

    console = console_registered_before_roles(auth_app)
    params = pkce_params(console, scope="admin")[1] if response_type == "code" else {}
    if response_type == "token":
        params = {
            "response_type": "token",
            "client_id": console.client_id,
            "redirect_uri": TEST_REDIRECT,
            "scope": "admin",
            "state": "st4te",
        }
    part = query_of if response_type == "code" else fragment_of
    expected = {
        "error": "invalid_scope",
        "error_description": USER_MAY_NOT,
        "state": "st4te",
        "iss": ISSUER,
    }

    r = sign_in(client, user, **params)  # the login form's POST
    assert r.status_code == 302, r.get_data(as_text=True)
    assert r.headers["Location"].startswith(TEST_REDIRECT)
    assert part(r.headers["Location"]) == expected

    r = client.get("/oauth/auth?" + urlencode(params))  # signed in already
    assert r.status_code == 302
    assert part(r.headers["Location"]) == expected

    r = client.post(
        "/auth/grant", data={**params, "grant": "true", "csrf_token": ensure_csrf(client)}
    )
    assert r.status_code == 302
    assert part(r.headers["Location"]) == expected
    with auth_app.app_context():
        for model in (AuthorizationCode, Token, Consent):
            assert db.session.scalars(select(model)).all() == []


def test_consent_page_never_offers_admin_to_a_user(auth_app, client, user):
    """The consent page (HTML and JSON) lists only what the user's role allows; the
    remembered consent and the issued token cover only that."""
    from auth_server.extensions import db
    from auth_server.models import Consent

    console = console_registered_before_roles(auth_app)
    verifier, params = pkce_params(console, scope="call admin")
    r = sign_in(client, user, **params)
    assert r.status_code == 303
    assert r.headers["Location"].startswith("/auth/grant")

    page = client.get("/auth/grant?" + urlencode(params), headers=JSON)
    assert page.status_code == 200
    assert page.json["scope"] == "call"
    html = client.get("/auth/grant?" + urlencode(params), headers=HTML).get_data(as_text=True)
    assert "<code>call</code>" in html
    assert "<code>admin</code>" not in html
    assert "administer every user" not in html

    r = client.post(
        "/auth/grant", data={**params, "grant": "true", "csrf_token": ensure_csrf(client)}
    )
    assert r.status_code == 302
    r = exchange(client, console, query_of(r.headers["Location"])["code"], verifier)
    assert (r.status_code, r.json["scope"]) == (200, "call")
    with auth_app.app_context():
        assert [c.scope for c in db.session.scalars(select(Consent))] == ["call"]


# --- people with the admin role ------------------------------------------------------------


def test_admin_role_user_gets_admin_through_an_explicitly_allowed_client(
    auth_app, client, api, flow
):
    """An admin-role user signing in through a client registered with the flag is offered
    and granted ``admin``, and the call API's admin interface answers."""
    root = make_user(auth_app, "root", "root-password", role="admin")
    console = admin_console(auth_app)
    _, params = pkce_params(console, scope="call admin")
    sign_in(client, root, **params)
    assert client.get("/auth/grant?" + urlencode(params), headers=JSON).json["scope"] == (
        "call admin"
    )
    tokens = flow.token(root, console, scope="call admin")
    assert tokens["scope"] == "call admin"
    r = api.get("/admin/users/someone", headers=bearer(tokens["access_token"]))
    assert r.status_code == 200, r.json


def test_demotion_takes_effect_on_the_next_authorization_and_refresh(
    auth_app, client, api, flow, cli
):
    """`users set-role root user`: the tokens that carry admin are revoked (refresh refused,
    introspection inactive), the remembered consent shrinks to ``call``, the next
    authorization gets ``call`` without asking again, and ``admin`` alone is refused."""
    root = make_user(auth_app, "root", "root-password", role="admin")
    console = admin_console(auth_app)
    before = flow.token(root, console, scope="call admin")
    assert before["scope"] == "call admin"

    result = cli("users", "set-role", "root", "user")
    assert (result.exit_code, result.output) == (0, "role of root set to user\n")

    r = refresh(client, console, before["refresh_token"])
    assert (r.status_code, r.json) == (
        400,
        {"error": "invalid_grant", "error_description": "The refresh token has been revoked."},
    )
    r = client.post(
        "/oauth/introspect", data={"token": before["access_token"]}, headers=console.basic()
    )
    assert (r.status_code, r.json) == (200, {"active": False})

    # Still signed in and the consent remembered (narrowed): straight back with a code.
    verifier, params = pkce_params(console, scope="call admin")
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    assert r.headers["Location"].startswith(TEST_REDIRECT + "?code=")
    r = exchange(client, console, query_of(r.headers["Location"])["code"], verifier)
    assert (r.status_code, r.json["scope"]) == (200, "call")
    r = api.get("/admin/users/someone", headers=bearer(r.json["access_token"]))
    assert (r.status_code, r.json) == (403, NEEDS_ADMIN)

    r = client.get("/oauth/auth?" + urlencode(pkce_params(console, scope="admin")[1]))
    assert query_of(r.headers["Location"])["error"] == "invalid_scope"
    assert json.loads(cli("users", "show", "root").output)["role"] == "user"


def test_demotion_revokes_unused_codes_that_carry_admin(auth_app, client, cli):
    """A code issued with admin before the demotion cannot be exchanged after it."""
    root = make_user(auth_app, "root", "root-password", role="admin")
    console = admin_console(auth_app)
    verifier, params = pkce_params(console, scope="call admin")
    code = get_code(client, root, params)
    assert cli("users", "set-role", "root", "user").exit_code == 0
    r = exchange(client, console, code, verifier)
    assert (r.status_code, r.json["error"]) == (400, "invalid_grant")


def test_refresh_never_carries_more_than_the_role_allows(auth_app, client, flow):
    """Even when the role changed without `set-role` revoking anything, a refresh narrows to
    the role (``scope`` in the response says so), and refuses when nothing is left."""
    root = make_user(auth_app, "root", "root-password", role="admin")
    console = admin_console(auth_app)
    both = flow.token(root, console, scope="call admin")
    only_admin = flow.token(root, console, scope="admin")
    assert only_admin["scope"] == "admin"
    set_role_in_database(auth_app, root.id, "user")

    r = refresh(client, console, both["refresh_token"])
    assert r.status_code == 200, r.json
    assert r.json["scope"] == "call"
    assert verify_access_token(client, r.json["access_token"])["scope"] == "call"

    r = refresh(client, console, only_admin["refresh_token"])
    assert (r.status_code, r.json) == (
        400,
        {"error": "invalid_scope", "error_description": USER_MAY_NOT},
    )


# --- registering such a client -------------------------------------------------------------


@pytest.mark.parametrize(
    "grant_args",
    [
        ("--grant-type", "authorization_code"),
        ("--grant-type", "implicit", "--response-type", "token"),
    ],
    ids=["authorization_code", "implicit"],
)
def test_registering_admin_with_a_browser_grant_needs_the_flag(cli, grant_args):
    """Refused in one line saying why, and nothing registered; with --allow-admin-for-users
    registered, with a warning on stderr that only admin-role users get admin through it."""
    args = ("clients", "create", "--name", "Console", "--redirect-uri", TEST_REDIRECT)
    result = cli(*args, *grant_args, "--scope", "call admin", "--json")
    assert (result.exit_code, result.output) == (1, REFUSED)
    assert cli("clients", "list").output == ""

    result = cli(*args, *grant_args, "--scope", "call admin", "--json", "--allow-admin-for-users")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"client_id", "client_secret"}
    assert result.stderr.startswith("Warning: this client may ask for the admin scope")
    assert "Only users with the admin role are granted admin" in result.stderr


def test_updating_a_client_into_admin_with_a_browser_grant_needs_the_flag(cli, web_client):
    """`clients update --scope "call admin"` on a browser client: refused without the flag,
    nothing changed; accepted (with the warning) with it."""
    before = cli("clients", "show", web_client.client_id).output
    result = cli("clients", "update", web_client.client_id, "--scope", "call admin")
    assert (result.exit_code, result.output) == (1, REFUSED)
    assert cli("clients", "show", web_client.client_id).output == before

    result = cli(
        "clients",
        "update",
        web_client.client_id,
        "--scope",
        "call admin",
        "--allow-admin-for-users",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scope"] == "call admin"
    assert result.stderr.startswith("Warning: ")
    # Once registered so, other changes need no flag again.
    result = cli("clients", "update", web_client.client_id, "--name", "Renamed")
    assert (result.exit_code, result.stderr) == (0, "")


def test_admin_for_a_client_credentials_client_needs_no_flag(cli):
    """A robot with admin (no person signs in through it) is registered as before."""
    result = cli(
        "clients",
        "create",
        "--name",
        "Robot",
        "--grant-type",
        "client_credentials",
        "--scope",
        "admin",
        "--json",
    )
    assert (result.exit_code, result.stderr) == (0, "")


# --- introspection -------------------------------------------------------------------------


def test_an_admin_client_cannot_introspect_other_clients_tokens(
    client, flow, user, web_client, admin_client
):
    """``admin`` is about calls at the call API, not about reading every token here."""
    token = flow.token(user, web_client)["access_token"]
    r = client.post("/oauth/introspect", data={"token": token}, headers=admin_client.basic())
    assert (r.status_code, r.json) == (200, {"active": False})


def test_an_introspect_client_introspects_any_token(auth_app, client, flow, user, web_client):
    """A client registered with ``introspect`` (the demo admin client has it) sees every
    token; the scope is advertised in the metadata."""
    inspector = make_client(
        auth_app,
        "Gateway",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="admin introspect",
    )
    tokens = flow.token(user, web_client)
    claims = verify_access_token(client, tokens["access_token"])
    r = client.post(
        "/oauth/introspect", data={"token": tokens["access_token"]}, headers=inspector.basic()
    )
    assert (r.status_code, r.json) == (
        200,
        {
            "active": True,
            "token_type": "Bearer",
            "scope": "call",
            "client_id": web_client.client_id,
            "sub": user.id,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": claims["iat"],
            "exp": claims["exp"],
            "jti": claims["jti"],
            "username": "alice",
        },
    )
    metadata = client.get("/.well-known/oauth-authorization-server").json
    assert "introspect" in metadata["scopes_supported"]


def test_demo_admin_client_may_introspect(auth_app, client, flow, user, web_client):
    """`make run`'s demo clients stay valid; its admin client is `admin introspect`."""
    from auth_server.demo import DEMO_ADMIN, ensure_demo

    with auth_app.app_context():
        assert "scope=admin introspect (client_credentials)" in ensure_demo()
    demo_admin = ClientInfo(*DEMO_ADMIN)
    token = flow.token(user, web_client)["access_token"]
    r = client.post("/oauth/introspect", data={"token": token}, headers=demo_admin.basic())
    assert (r.status_code, r.json["active"]) == (200, True)
