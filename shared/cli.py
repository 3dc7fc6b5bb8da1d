"""What both service CLIs share: the ``init-db`` and ``config show`` commands, ClickCall's
``--version``, one-line usage errors, and help text that states every option's default
(Flask's own options included)."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .errors import ClickCallError
from .showconfig import masked

VERSION_MESSAGE = "%(prog)s (ClickCall) %(version)s"


def version_option(prog_name: str) -> Callable[[Any], Any]:
    """``--version``: ClickCall's version from the package metadata (``clickcall``), in place
    of Flask's (create the ``FlaskGroup`` with ``add_version_option=False``)."""
    return click.version_option(
        package_name="clickcall",
        prog_name=prog_name,
        message=VERSION_MESSAGE,
        help="Print ClickCall's version and exit.",
    )


@contextlib.contextmanager
def service_errors() -> Iterator[None]:
    """A rule refused the command (a ``ClickCallError``): its description as a one-line
    ``Error: …``, exit status 1."""
    try:
        yield
    except ClickCallError as exc:
        raise click.ClickException(exc.description) from exc


class UsageProblem(click.ClickException):
    """A bad or missing value on the command line: one line, exit status 2 (no usage dump)."""

    exit_code = 2


# The options FlaskGroup adds, with help that states their defaults.
FLASK_OPTION_HELP = {
    "env_file": "Load environment variables from this file (variables already set win). "
    "[default: none]",
    "app": "Load another Flask application ('module:name') instead of this service. "
    "[default: this service's create_app()]",
    "debug": "Flask's debug mode (for `run`). [default: off, or FLASK_DEBUG]",
}


def document_flask_options(group: click.Group) -> None:
    """Give the options FlaskGroup adds help that states their defaults (on copies: Flask's
    option objects are shared module globals)."""
    params: list[click.Parameter] = []
    for param in group.params:
        text = FLASK_OPTION_HELP.get(param.name or "")
        if text is not None and isinstance(param, click.Option):
            param = copy.copy(param)
            param.help = text
        params.append(param)
    group.params = params


def add_common_commands(
    main: click.Group,
    load_config: Callable[[Mapping[str, str]], dict[str, Any]],
    upgrade: Callable[[], None],
    database: str,
) -> None:
    """Register ``init-db`` (run the migrations) and ``config show`` on ``main``.

    ``config show`` prints every setting the service reads from the environment (the keys
    of its ``load_config``), with secrets masked.
    """

    @main.command("init-db")
    @with_appcontext
    def init_db() -> None:
        """Create or upgrade the schema."""
        upgrade()
        click.echo(f"{database} database ready")

    @main.group()
    def config() -> None:
        """Configuration."""

    @config.command("show")
    @with_appcontext
    def config_show() -> None:
        """Print the effective configuration (secrets masked)."""
        keys = list(load_config(os.environ))
        click.echo(masked(dict(current_app.config), keys))
