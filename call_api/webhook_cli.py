"""``call-api worker`` and ``call-api webhooks …`` (stub: the webhooks work fills it in)."""

from __future__ import annotations

import click


@click.command("worker")
def worker() -> None:
    """Deliver webhook events until stopped."""
    raise click.ClickException("not built yet")


@click.group("webhooks")
def webhooks() -> None:
    """Apps' status-callback URLs and signing secrets."""
