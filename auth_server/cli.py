"""``auth-server`` command line (a Flask ``FlaskGroup``)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from shared.cli import (
    UsageProblem,
    add_common_commands,
    document_flask_options,
    service_errors,
    version_option,
)
from shared.errors import InvalidRequest

from . import accounts, create_app, registration, sessions
from . import clients as client_service
from .config import load_config
from .extensions import db
from .models import Client
from .rules import (
    CONFIDENTIAL_AUTH_METHODS,
    DEFAULT_GRANT_TYPES,
    DEFAULT_ROLE,
    DEFAULT_SCOPE,
    GRANT_TYPES,
    IMPLICIT_RESPONSE_TYPES,
    RESPONSE_TYPES,
    ROLE_SCOPES,
    ROLES,
    SCOPES,
)
from .schema import upgrade
from .tokens import keyring


def _create_app() -> object:
    # The CLI must work before the first key exists (`keys rotate` creates it); serving
    # processes (gunicorn) still refuse to start without one in production.
    return create_app({"AUTH_REQUIRE_KEYS": False})


# Flask's own --version (Python, Flask, Werkzeug) is replaced by ClickCall's.
@click.group(
    "auth-server",
    cls=FlaskGroup,
    create_app=_create_app,
    add_default_commands=True,
    add_version_option=False,
)
@version_option("auth-server")
def main() -> None:
    """ClickCall authorization server."""


def _production() -> bool:
    return bool(current_app.config["APP_ENV"] == "production")


def _read_password(password_stdin: bool) -> str:
    if not password_stdin:
        raise UsageProblem("pass --password-stdin and send the password on standard input")
    return sys.stdin.readline().rstrip("\r\n")


PASSWORD_STDIN_HELP = (
    "Read the password (one line) from standard input. Required: a password is never "
    "taken from the command line."
)
# Usernames may start with "-": read such a word as USERNAME, not as an unknown option.
USERNAME_ARG = {"ignore_unknown_options": True}
ROLES_HELP = "; ".join(f"{role}: {' '.join(ROLE_SCOPES[role])}" for role in ROLES)
NAME_HELP = "The user's full name (the OpenID Connect 'name' claim, scope profile)."
EMAIL_HELP = "The user's email address (the 'email' claim, scope email)."


def _check_role(role: str) -> str:
    """``accounts.validate_role`` as a usage problem (one line, exit status 2)."""
    try:
        return accounts.validate_role(role)
    except InvalidRequest as exc:
        raise UsageProblem(exc.description) from exc


document_flask_options(main)
add_common_commands(main, load_config, upgrade, "auth")


@main.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help=PASSWORD_STDIN_HELP)
@click.option(
    "--role",
    default=DEFAULT_ROLE,
    show_default=True,
    metavar="ROLE",
    help=f"{' or '.join(ROLES)}: the scopes the user may be granted through the browser "
    f"flows ({ROLES_HELP}).",
)
@click.option("--name", metavar="NAME", help=f"{NAME_HELP} [default: none]")
@click.option("--email", metavar="ADDRESS", help=f"{EMAIL_HELP} [default: none]")
@click.option(
    "--email-verified", is_flag=True, help="The address is known to be the user's. [default: off]"
)
@with_appcontext
def users_create(
    username: str,
    password_stdin: bool,
    role: str,
    name: str | None,
    email: str | None,
    email_verified: bool,
) -> None:
    """Create a user (the password is read from stdin, never from the command line)."""
    _check_role(role)
    if email_verified and not email:
        raise UsageProblem("--email-verified needs --email")
    password = _read_password(password_stdin)
    with service_errors():
        user = accounts.create_user(username, password, role, name, email, email_verified)
    click.echo(json.dumps({"id": user.id, "username": user.username}))


@users.command("update", context_settings=USERNAME_ARG)
@click.argument("username")
@click.option("--name", metavar="NAME", help=f'{NAME_HELP} "" removes it. [default: unchanged]')
@click.option(
    "--email",
    metavar="ADDRESS",
    help=f'{EMAIL_HELP} "" removes it; a new address is unverified unless '
    "--email-verified is given. [default: unchanged]",
)
@click.option(
    "--email-verified/--no-email-verified",
    default=None,
    help="Whether the address is known to be the user's. [default: unchanged]",
)
@with_appcontext
def users_update(
    username: str, name: str | None, email: str | None, email_verified: bool | None
) -> None:
    """Change USERNAME's name and email address (the OpenID Connect profile and email
    claims); prints the user."""
    with service_errors():
        user = accounts.set_profile(accounts.find_user(username), name, email, email_verified)
    click.echo(json.dumps(accounts.describe_user(user, details=True), indent=2))


@users.command("list")
@with_appcontext
def users_list() -> None:
    """List users as JSON lines (id, username, role, disabled, created_at), by username."""
    for user in accounts.list_users():
        click.echo(json.dumps(accounts.describe_user(user)))


@users.command("show", context_settings=USERNAME_ARG)
@click.argument("username")
@with_appcontext
def users_show(username: str) -> None:
    """Show one user and the clients they authorized (never the password hash)."""
    with service_errors():
        user = accounts.find_user(username)
    click.echo(json.dumps(accounts.describe_user(user, details=True), indent=2))


@users.command("disable", context_settings=USERNAME_ARG)
@click.argument("username")
@with_appcontext
def users_disable(username: str) -> None:
    """Stop USERNAME from signing in; revoke their refresh tokens, codes and consents.

    Access tokens already issued are JWTs: resource servers accept them until they expire
    (ACCESS_TOKEN_TTL); introspection reports them inactive at once.
    """
    with service_errors():
        accounts.disable_user(username)
    click.echo(f"disabled {username} (refresh tokens, codes and consents revoked)")


@users.command("enable", context_settings=USERNAME_ARG)
@click.argument("username")
@with_appcontext
def users_enable(username: str) -> None:
    """Let a disabled user sign in again (what was revoked stays revoked)."""
    with service_errors():
        accounts.enable_user(username)
    click.echo(f"enabled {username}")


@users.command("set-role", context_settings=USERNAME_ARG)
@click.argument("username")
@click.argument("role")
@with_appcontext
def users_set_role(username: str, role: str) -> None:
    """Give USERNAME the role ROLE (user or admin).

    A demotion takes effect at once: the user's refresh tokens, unused codes and access
    tokens (as introspection sees them) that carry a scope the new role does not allow are
    revoked, and remembered consents are narrowed, so apps must sign the user in again.
    """
    _check_role(role)
    with service_errors():
        accounts.set_role(username, role)
    click.echo(f"role of {username} set to {role}")


@users.command("set-password", context_settings=USERNAME_ARG)
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help=PASSWORD_STDIN_HELP)
@with_appcontext
def users_set_password(username: str, password_stdin: bool) -> None:
    """Give USERNAME a new password (read from stdin, never from the command line)."""
    password = _read_password(password_stdin)
    with service_errors():
        accounts.set_password(username, password)
    click.echo(f"password changed for {username}")


@users.command("delete", context_settings=USERNAME_ARG)
@click.argument("username")
@with_appcontext
def users_delete(username: str) -> None:
    """Delete USERNAME with their tokens, codes and consents."""
    with service_errors():
        accounts.delete_user(username)
    click.echo(f"deleted {username}")


@users.command("sign-out", context_settings=USERNAME_ARG)
@click.argument("username")
@with_appcontext
def users_sign_out(username: str) -> None:
    """End every login session of USERNAME, in every browser (they must sign in again).

    Changing the password or disabling the user does this too. Tokens already issued to
    apps are not touched (revoke them with `users disable`).
    """
    with service_errors():
        user = accounts.find_user(username)
    ended = sessions.sign_out_everywhere(user.id)
    click.echo(f"signed out {username} ({ended} session{'' if ended == 1 else 's'} ended)")


@main.group()
def clients() -> None:
    """Manage OAuth clients."""


def _check_implicit(grant_types: tuple[str, ...], response_types: tuple[str, ...]) -> None:
    implicit = [r for r in response_types if r in IMPLICIT_RESPONSE_TYPES]
    if "implicit" in grant_types and not implicit:
        # The contract: implicit needs an explicit --response-type token (no silent default).
        raise click.ClickException("The implicit grant needs --response-type token.")


GRANTS = ", ".join(GRANT_TYPES)
RESPONSES = ", ".join(repr(t) if " " in t else t for t in RESPONSE_TYPES)
POST_LOGOUT_HELP = (
    "A URI the client may send people back to after RP-initiated logout (OpenID Connect "
    "post_logout_redirect_uri), matched exactly; repeat for several."
)
REQUIRE_PAR_HELP = (
    "The client must push its authorization requests to /oauth/par (RFC 9126 "
    "require_pushed_authorization_requests); a plain authorization request is refused."
)
REQUIRE_DPOP_HELP = (
    "The client must send a DPoP proof with every token request (RFC 9449 "
    "dpop_bound_access_tokens): its access tokens are then always DPoP-bound."
)
ALLOW_ADMIN_HELP = (
    "Allow the admin scope together with authorization_code or implicit: only users with "
    "the admin role are then granted admin through this client (a warning on stderr says "
    "why this is dangerous)."
)


def _warn_admin_for_users(client: Client) -> None:
    if client_service.admin_for_users(client):
        click.echo(client_service.ADMIN_FOR_USERS_WARNING, err=True)


@clients.command("create")
@click.option(
    "--name", required=True, metavar="NAME", help="The client's name, shown on the consent page."
)
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    metavar="URI",
    help="A redirect URI, matched exactly; repeat for several. "
    "[default: none; needed by clients of the authorization endpoint]",
)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    metavar="TYPE",
    help=f"{GRANTS}; repeat for several. [default: {', '.join(DEFAULT_GRANT_TYPES)}]",
)
@click.option(
    "--response-type",
    "response_types",
    multiple=True,
    metavar="TYPE",
    help=f"{RESPONSES}; repeat for several. "
    "[default: those of the grant types: code for authorization_code]",
)
@click.option(
    "--scope",
    default=DEFAULT_SCOPE,
    metavar="SCOPES",
    show_default=True,
    help=f"The scopes the client may ask for, space-separated, among: {' '.join(SCOPES)}.",
)
@click.option(
    "--public",
    is_flag=True,
    help="A public client: no secret, PKCE required. [default: confidential, with a secret]",
)
@click.option(
    "--allow-admin-for-users",
    is_flag=True,
    help=f"{ALLOW_ADMIN_HELP} [default: off: such a client is refused]",
)
@click.option(
    "--auth-method",
    metavar="METHOD",
    help="How the client authenticates at the token endpoint: "
    f"{', '.join(CONFIDENTIAL_AUTH_METHODS)} (private_key_jwt needs --jwks-file or "
    "--jwks-uri and gets no secret; client_secret_jwt keeps its secret encrypted too). "
    "[default: client_secret_basic; none with --public]",
)
@click.option(
    "--jwks-file",
    type=click.File("r"),
    metavar="FILE",
    help="A JSON file with the client's public keys (a JWK Set), for private_key_jwt. "
    "[default: none]",
)
@click.option(
    "--jwks-uri",
    metavar="URL",
    help="Where the client publishes its public keys (a JWK Set), for private_key_jwt; "
    "https:// in production. [default: none]",
)
@click.option(
    "--post-logout-redirect-uri",
    "post_logout_redirect_uris",
    multiple=True,
    metavar="URI",
    help=f"{POST_LOGOUT_HELP} [default: none]",
)
@click.option("--require-par", is_flag=True, help=f"{REQUIRE_PAR_HELP} [default: off]")
@click.option("--require-dpop", is_flag=True, help=f"{REQUIRE_DPOP_HELP} [default: off]")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print {client_id, client_secret} as JSON. [default: one labelled line each]",
)
@with_appcontext
def clients_create(
    name: str,
    redirect_uris: tuple[str, ...],
    grant_types: tuple[str, ...],
    response_types: tuple[str, ...],
    scope: str,
    public: bool,
    allow_admin_for_users: bool,
    auth_method: str | None,
    jwks_file: Any,
    jwks_uri: str | None,
    post_logout_redirect_uris: tuple[str, ...],
    require_par: bool,
    require_dpop: bool,
    as_json: bool,
) -> None:
    """Register a client; its secret is shown once and stored hashed."""
    _check_implicit(grant_types, response_types)
    jwks = None
    if jwks_file is not None:
        try:
            jwks = json.load(jwks_file)
        except ValueError as exc:
            raise UsageProblem(f"--jwks-file is not JSON: {exc}") from exc
    with service_errors():
        registered = client_service.create_client(
            name=name,
            redirect_uris=redirect_uris,
            grant_types=grant_types or DEFAULT_GRANT_TYPES,
            response_types=response_types or None,
            scope=scope,
            public=public,
            production=_production(),
            allow_admin_for_users=allow_admin_for_users,
            auth_method=auth_method,
            jwks=jwks,
            jwks_uri=jwks_uri,
            post_logout_redirect_uris=post_logout_redirect_uris or None,
        )
    if require_par or require_dpop:
        client_service.set_request_policy(registered.client.client_id, require_par, require_dpop)
    _warn_admin_for_users(registered.client)
    out: dict[str, str] = {"client_id": registered.client.client_id}
    if registered.client_secret:
        out["client_secret"] = registered.client_secret
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"client_id:     {out['client_id']}")
    if "client_secret" in out:
        click.echo(f"client_secret: {out['client_secret']}   (shown once; stored hashed)")


UNCHANGED = "[default: unchanged]"


@clients.command("update")
@click.argument("client_id")
@click.option("--name", metavar="NAME", help=f"A new name. {UNCHANGED}")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    metavar="URI",
    help=f"The redirect URIs (all of them: they replace the registered ones); repeat for "
    f"several. {UNCHANGED}",
)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    metavar="TYPE",
    help=f"The grant types ({GRANTS}; they replace the registered ones); repeat for several. "
    f"Without --response-type the response types follow them, as in `create`. {UNCHANGED}",
)
@click.option(
    "--response-type",
    "response_types",
    multiple=True,
    metavar="TYPE",
    help=f"The response types ({RESPONSES}); repeat for several. {UNCHANGED}",
)
@click.option(
    "--scope",
    metavar="SCOPES",
    help=f"The scopes, space-separated, among: {' '.join(SCOPES)}. {UNCHANGED}",
)
@click.option(
    "--allow-admin-for-users",
    is_flag=True,
    help=f"{ALLOW_ADMIN_HELP} Needed when the update brings the two together. [default: off]",
)
@click.option(
    "--post-logout-redirect-uri",
    "post_logout_redirect_uris",
    multiple=True,
    metavar="URI",
    help=f"{POST_LOGOUT_HELP} They replace the registered ones. {UNCHANGED}",
)
@click.option(
    "--require-par/--no-require-par", default=None, help=f"{REQUIRE_PAR_HELP} {UNCHANGED}"
)
@click.option(
    "--require-dpop/--no-require-dpop", default=None, help=f"{REQUIRE_DPOP_HELP} {UNCHANGED}"
)
@with_appcontext
def clients_update(
    client_id: str,
    name: str | None,
    redirect_uris: tuple[str, ...],
    grant_types: tuple[str, ...],
    response_types: tuple[str, ...],
    scope: str | None,
    allow_admin_for_users: bool,
    post_logout_redirect_uris: tuple[str, ...],
    require_par: bool | None,
    require_dpop: bool | None,
) -> None:
    """Change a client's registration: only the options given change, checked as in
    `create`. The client keeps its id, its secret and whether it is public; prints it."""
    if grant_types:
        _check_implicit(grant_types, response_types)
    with service_errors():
        client = client_service.update_client(
            client_id,
            name=name,
            redirect_uris=redirect_uris or None,
            grant_types=grant_types or None,
            response_types=response_types or None,
            scope=scope,
            production=_production(),
            allow_admin_for_users=allow_admin_for_users,
            post_logout_redirect_uris=post_logout_redirect_uris or None,
        )
        if require_par is not None or require_dpop is not None:
            client = client_service.set_request_policy(client_id, require_par, require_dpop)
    if allow_admin_for_users:
        _warn_admin_for_users(client)
    click.echo(json.dumps(client_service.describe(client), indent=2))


@clients.command("list")
@with_appcontext
def clients_list() -> None:
    """List clients as JSON lines."""
    for client in client_service.list_clients():
        click.echo(json.dumps(client_service.describe(client)))


@clients.command("show")
@click.argument("client_id")
@with_appcontext
def clients_show(client_id: str) -> None:
    """Show one client (never its secret)."""
    with service_errors():
        click.echo(
            json.dumps(client_service.describe(client_service.get_client(client_id)), indent=2)
        )


@clients.command("delete")
@click.argument("client_id")
@with_appcontext
def clients_delete(client_id: str) -> None:
    """Delete a client with its codes, consents and tokens."""
    with service_errors():
        client_service.delete_client(client_id)
    click.echo(f"deleted {client_id}")


@clients.command("rotate-secret")
@click.argument("client_id")
@with_appcontext
def clients_rotate_secret(client_id: str) -> None:
    """Give a confidential client a new secret (the old one stops working)."""
    with service_errors():
        secret = client_service.rotate_secret(client_id)
    click.echo(json.dumps({"client_id": client_id, "client_secret": secret}))


@main.group("registration-tokens")
def registration_tokens() -> None:
    """Initial access tokens for dynamic client registration (RFC 7591, POST /oauth/register)."""


@registration_tokens.command("create")
@click.option(
    "--expires",
    default="1d",
    show_default=True,
    metavar="DURATION",
    help="How long the token is valid: 30m, 1h, 7d, or never.",
)
@click.option(
    "--max-uses",
    type=click.IntRange(min=1),
    metavar="N",
    help="How many clients it may register. [default: no limit]",
)
@click.option(
    "--note",
    default="",
    metavar="TEXT",
    help="What the token is for (shown by list). [default: empty]",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print {id, token, expires_at, max_uses} as JSON. [default: labelled lines]",
)
@with_appcontext
def registration_tokens_create(
    expires: str, max_uses: int | None, note: str, as_json: bool
) -> None:
    """Mint an initial access token; it is shown once and stored hashed."""
    with service_errors():
        minted = registration.create_token(registration.parse_expiry(expires), max_uses, note)
    out = {
        "id": minted.row.id,
        "token": minted.token,
        "expires_at": minted.row.expires_at,
        "max_uses": minted.row.max_uses,
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"token:      {minted.token}   (shown once; stored hashed)")
    click.echo(f"id:         {out['id']}")
    click.echo(f"expires_at: {out['expires_at'] if out['expires_at'] is not None else 'never'}")
    click.echo(f"max_uses:   {max_uses if max_uses is not None else 'unlimited'}")


@registration_tokens.command("list")
@with_appcontext
def registration_tokens_list() -> None:
    """List initial access tokens as JSON lines (never the token itself)."""
    for row in registration.list_tokens():
        click.echo(json.dumps(registration.describe_token(row)))


@registration_tokens.command("revoke")
@click.argument("token_id", type=int, metavar="ID")
@with_appcontext
def registration_tokens_revoke(token_id: int) -> None:
    """Revoke an initial access token (clients it registered stay registered)."""
    with service_errors():
        registration.revoke_token(token_id)
    click.echo(f"revoked registration token {token_id}")


@main.group()
def keys() -> None:
    """Manage signing keys."""


@keys.command("rotate")
@click.option(
    "--stage",
    is_flag=True,
    help="Publish the new key in the JWKS but keep signing with the current one; "
    "switch later with `keys activate KID` once resource servers have fetched it. "
    "[default: off: the new key signs at once]",
)
@with_appcontext
def keys_rotate(stage: bool) -> None:
    """Add a signing key and sign new tokens with it; old keys stay in the JWKS."""
    key = keyring().rotate(stage=stage)
    [line] = [k for k in keyring().describe() if k["kid"] == key.kid]
    click.echo(json.dumps(line))


@keys.command("activate", context_settings={"ignore_unknown_options": True})
@click.argument("kid")
@with_appcontext
def keys_activate(kid: str) -> None:
    """Sign new tokens with KID (a key already published in the JWKS)."""
    try:
        keyring().activate(kid)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"kid": kid, "current": True}))


# A kid is a base64url thumbprint and may start with "-": read it as the argument, not an option.
@keys.command("retire", context_settings={"ignore_unknown_options": True})
@click.argument("kid")
@with_appcontext
def keys_retire(kid: str) -> None:
    """Remove a (non-current) key from the JWKS: tokens it signed stop validating."""
    try:
        keyring().retire(kid)
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"retired {kid}")


@keys.command("list")
@with_appcontext
def keys_list() -> None:
    """List the published keys; the current one is marked."""
    for line in keyring().describe():
        click.echo(json.dumps(line))


@main.command("demo")
@with_appcontext
def demo() -> None:
    """Create the development demo user and clients if missing, and print them."""
    from .demo import ensure_demo

    click.echo(ensure_demo())


__all__ = ["main", "db"]
if __name__ == "__main__":
    main()
