"""The simulator dialer (stub: the simulator work fills it in)."""

from __future__ import annotations

import click


@click.command("simulator")
def command() -> None:
    """Run the simulator dialer until stopped."""
    raise click.ClickException("not built yet")
