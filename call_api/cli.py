"""``call-api`` command line (a Flask ``FlaskGroup``)."""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from shared.errors import ClickCallError

from . import calls, create_app


def _create_app() -> object:
    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=True)
def main() -> None:
    """ClickCall call API."""


def _policy() -> calls.Policy:
    return calls.Policy(
        default_limit=current_app.config["CALL_MAX_ONGOING_DEFAULT"],
        max_duration=current_app.config["CALL_MAX_DURATION"],
    )


@main.group()
def config() -> None:
    """Configuration."""


@config.command("show")
@with_appcontext
def config_show() -> None:
    """Print the effective configuration (secrets masked)."""
    from shared.showconfig import masked

    click.echo(
        masked(
            dict(current_app.config),
            [
                "APP_ENV",
                "SQLALCHEMY_DATABASE_URI",
                "AUTH_ISSUER",
                "CALL_AUDIENCE",
                "CALL_JWKS_URL",
                "CALL_PUBLIC_KEY_FILE",
                "CALL_ALGORITHMS",
                "CALL_TOKEN_LEEWAY",
                "CALL_JWKS_CACHE_TTL",
                "CALL_JWKS_MIN_REFRESH_INTERVAL",
                "CALL_MAX_ONGOING_DEFAULT",
                "CALL_MAX_DURATION",
                "CALL_DEFAULT_REGION",
                "CALL_ALLOW_QUERY_TOKEN",
                "CORS_ORIGINS",
                "MAX_CONTENT_LENGTH",
                "TRUSTED_PROXIES",
            ],
        )
    )


@main.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the schema."""
    from .schema import upgrade

    upgrade()
    click.echo("calls database ready")


@main.group()
def limits() -> None:
    """Per-user ongoing-call limits."""


@limits.command("set")
@click.argument("subject")
@click.argument("n", type=click.IntRange(0, calls.MAX_LIMIT))
@with_appcontext
def limits_set(subject: str, n: int) -> None:
    """Set SUBJECT's ongoing-call limit to N."""
    try:
        calls.set_limit(subject, n)
    except ClickCallError as exc:
        raise click.ClickException(exc.description) from exc
    click.echo(json.dumps({"subject": subject, "max_ongoing": n}))


@limits.command("show")
@click.argument("subject")
@with_appcontext
def limits_show(subject: str) -> None:
    """Show SUBJECT's limit and ongoing count."""
    summary = calls.user_summary(subject, _policy(), recent=0)
    summary.pop("recent_calls")
    click.echo(json.dumps(summary))


@main.command("expire-calls")
@with_appcontext
def expire_calls() -> None:
    """End calls older than CALL_MAX_DURATION (for a cron job)."""
    click.echo(json.dumps({"expired": calls.expire_calls(_policy())}))


if __name__ == "__main__":
    main()
