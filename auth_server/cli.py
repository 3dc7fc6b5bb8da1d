"""``auth-server`` command line (a Flask ``FlaskGroup``)."""

from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from shared.cli import add_common_commands
from shared.errors import ClickCallError
from shared.keys import KeyStore

from . import clients as client_service
from . import create_app
from .accounts import create_user
from .config import load_config
from .extensions import db
from .schema import upgrade


def _create_app() -> object:
    # The CLI must work before the first key exists (`keys rotate` creates it); serving
    # processes (gunicorn) still refuse to start without one in production.
    return create_app({"AUTH_REQUIRE_KEYS": False})


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=True)
def main() -> None:
    """ClickCall authorization server."""


def _fail(exc: ClickCallError) -> None:
    raise click.ClickException(exc.description)


add_common_commands(main, load_config, upgrade, "auth")


@main.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def users_create(username: str, password_stdin: bool) -> None:
    """Create a user (the password is read from stdin, never from the command line)."""
    if not password_stdin:
        raise click.UsageError("pass --password-stdin and send the password on standard input")
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        user = create_user(username, password)
    except ClickCallError as exc:
        _fail(exc)
    click.echo(json.dumps({"id": user.id, "username": user.username}))


@main.group()
def clients() -> None:
    """Manage OAuth clients."""


@clients.command("create")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option("--grant-type", "grant_types", multiple=True)
@click.option("--response-type", "response_types", multiple=True)
@click.option("--scope", default="call", show_default=True)
@click.option("--public", is_flag=True, help="A public client (no secret; PKCE required).")
@click.option("--json", "as_json", is_flag=True, help="Print {client_id, client_secret} as JSON.")
@with_appcontext
def clients_create(
    name: str,
    redirect_uris: tuple[str, ...],
    grant_types: tuple[str, ...],
    response_types: tuple[str, ...],
    scope: str,
    public: bool,
    as_json: bool,
) -> None:
    """Register a client; its secret is shown once and stored hashed."""
    if "implicit" in grant_types and "token" not in response_types:
        # The contract: implicit needs an explicit --response-type token (no silent default).
        raise click.ClickException("The implicit grant needs --response-type token.")
    try:
        registered = client_service.create_client(
            name=name,
            redirect_uris=redirect_uris,
            grant_types=grant_types or ("authorization_code",),
            response_types=response_types or None,
            scope=scope,
            public=public,
            production=current_app.config["APP_ENV"] == "production",
        )
    except ClickCallError as exc:
        _fail(exc)
    out: dict[str, str] = {"client_id": registered.client.client_id}
    if registered.client_secret:
        out["client_secret"] = registered.client_secret
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"client_id:     {out['client_id']}")
    if "client_secret" in out:
        click.echo(f"client_secret: {out['client_secret']}   (shown once; stored hashed)")


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
    try:
        click.echo(
            json.dumps(client_service.describe(client_service.get_client(client_id)), indent=2)
        )
    except ClickCallError as exc:
        _fail(exc)


@clients.command("delete")
@click.argument("client_id")
@with_appcontext
def clients_delete(client_id: str) -> None:
    """Delete a client with its codes, consents and tokens."""
    try:
        client_service.delete_client(client_id)
    except ClickCallError as exc:
        _fail(exc)
    click.echo(f"deleted {client_id}")


@clients.command("rotate-secret")
@click.argument("client_id")
@with_appcontext
def clients_rotate_secret(client_id: str) -> None:
    """Give a confidential client a new secret (the old one stops working)."""
    try:
        secret = client_service.rotate_secret(client_id)
    except ClickCallError as exc:
        _fail(exc)
    click.echo(json.dumps({"client_id": client_id, "client_secret": secret}))


@main.group()
def keys() -> None:
    """Manage signing keys."""


@keys.command("rotate")
@click.option(
    "--stage",
    is_flag=True,
    help="Publish the new key in the JWKS but keep signing with the current one; "
    "switch later with `keys activate KID` once resource servers have fetched it.",
)
@with_appcontext
def keys_rotate(stage: bool) -> None:
    """Add a signing key and sign new tokens with it; old keys stay in the JWKS."""
    store = KeyStore(current_app.config["AUTH_KEYS_DIR"])
    key = store.add(current_app.config["AUTH_SIGNING_ALG"], activate=not stage)
    current = store.current()
    is_current = current is not None and current.kid == key.kid
    click.echo(json.dumps({"kid": key.kid, "alg": key.algorithm, "current": is_current}))


@keys.command("activate", context_settings={"ignore_unknown_options": True})
@click.argument("kid")
@with_appcontext
def keys_activate(kid: str) -> None:
    """Sign new tokens with KID (a key already published in the JWKS)."""
    store = KeyStore(current_app.config["AUTH_KEYS_DIR"])
    try:
        store.activate(kid)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"kid": kid, "current": True}))


# A kid is a base64url thumbprint and may start with "-": read it as the argument, not an option.
@keys.command("retire", context_settings={"ignore_unknown_options": True})
@click.argument("kid")
@with_appcontext
def keys_retire(kid: str) -> None:
    """Remove a (non-current) key from the JWKS: tokens it signed stop validating."""
    store = KeyStore(current_app.config["AUTH_KEYS_DIR"])
    try:
        store.retire(kid)
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"retired {kid}")


@keys.command("list")
@with_appcontext
def keys_list() -> None:
    """List the published keys; the current one is marked."""
    store = KeyStore(current_app.config["AUTH_KEYS_DIR"])
    current = store.current()
    for key in store.keys():
        click.echo(
            json.dumps(
                {
                    "kid": key.kid,
                    "alg": key.algorithm,
                    "current": current is not None and key.kid == current.kid,
                }
            )
        )


@main.command("demo")
@with_appcontext
def demo() -> None:
    """Create the development demo user and clients if missing, and print them."""
    from .demo import ensure_demo

    click.echo(ensure_demo())


__all__ = ["main", "db"]
if __name__ == "__main__":
    main()
