"""Commands both service CLIs have: ``init-db`` and ``config show``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .showconfig import masked


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
