"""``call-api`` command line (a Flask ``FlaskGroup``)."""

from __future__ import annotations

import json

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

from . import calls, create_app, simulator, webhook_cli
from .config import load_config
from .schema import upgrade
from .views.params import parse_integer


def _create_app() -> object:
    return create_app()


# Flask's own --version (Python, Flask, Werkzeug) is replaced by ClickCall's.
@click.group(
    "call-api",
    cls=FlaskGroup,
    create_app=_create_app,
    add_default_commands=True,
    add_version_option=False,
)
@version_option("call-api")
def main() -> None:
    """ClickCall call API."""


class Limit(click.ParamType):
    """An ongoing-call limit, 0 to ``MAX_LIMIT``; a bad value is a one-line error."""

    name = "integer"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        label = (param.human_readable_name if param is not None else "N").upper()
        number = parse_integer(text)  # never int() on thousands of digits
        if number is not None and 0 <= number <= calls.MAX_LIMIT:
            return number
        raise UsageProblem(
            f"Invalid value for '{label}': {label} must be an integer between 0 and "
            f"{calls.MAX_LIMIT}, got {text!r}."
        )


# A SUBJECT or N may start with "-" (a negative N is refused by name, not as an option).
ARGS_MAY_START_WITH_DASH = {"ignore_unknown_options": True}


def _policy() -> calls.Policy:
    return calls.Policy.from_config(current_app.config)


document_flask_options(main)
add_common_commands(main, load_config, upgrade, "calls")


@main.group()
def limits() -> None:
    """Per-user ongoing-call limits."""


@limits.command(
    "set",
    context_settings=ARGS_MAY_START_WITH_DASH,
    help=f"Set SUBJECT's ongoing-call limit to N, from 0 (refuse every new call) to "
    f"{calls.MAX_LIMIT}. Lowering it ends no call: it only refuses new ones.",
)
@click.argument("subject")
@click.argument("n", type=Limit())
@with_appcontext
def limits_set(subject: str, n: int) -> None:
    """Set SUBJECT's ongoing-call limit to N."""
    with service_errors():
        calls.set_limit(subject, n)
    click.echo(json.dumps({"subject": subject, "max_ongoing": n}))


def _show(subject: str) -> None:
    summary = calls.user_summary(subject, _policy(), recent=0)
    summary.pop("recent_calls")
    click.echo(json.dumps(summary))


@limits.command("show", context_settings=ARGS_MAY_START_WITH_DASH)
@click.argument("subject")
@with_appcontext
def limits_show(subject: str) -> None:
    """Show SUBJECT's limit, where it comes from (user or default) and ongoing count."""
    _show(subject)


@limits.command("reset", context_settings=ARGS_MAY_START_WITH_DASH)
@click.argument("subject")
@with_appcontext
def limits_reset(subject: str) -> None:
    """Give SUBJECT the default limit (CALL_MAX_ONGOING_DEFAULT) again; prints it as `show`."""
    with service_errors():
        calls.set_limit(subject, None)
    _show(subject)


@main.command("expire-calls")
@with_appcontext
def expire_calls() -> None:
    """End calls older than CALL_MAX_DURATION (for a cron job)."""
    click.echo(json.dumps({"expired": calls.expire_calls(_policy())}))


# The call lifecycle's processes: the webhook worker and its admin commands
# (call_api/webhook_cli.py) and the simulator dialer (call_api/simulator.py).
main.add_command(webhook_cli.worker)
main.add_command(webhook_cli.webhooks)
main.add_command(simulator.command)


if __name__ == "__main__":
    main()
