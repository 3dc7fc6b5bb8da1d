"""``call-api`` command line (a Flask ``FlaskGroup``)."""

from __future__ import annotations

import json

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from shared.cli import add_common_commands
from shared.errors import ClickCallError

from . import calls, create_app
from .config import load_config
from .schema import upgrade


def _create_app() -> object:
    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=True)
def main() -> None:
    """ClickCall call API."""


def _policy() -> calls.Policy:
    return calls.Policy.from_config(current_app.config)


add_common_commands(main, load_config, upgrade, "calls")


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
