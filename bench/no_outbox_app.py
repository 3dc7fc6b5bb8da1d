"""The ``lifecycle`` scenario's baseline: the call API with its outbox switched off.

The real call API, except that ``call_api.calls.record_event`` (the event row every
transition adds to its own transaction: the destination lookup, the payload, the INSERT) does
nothing. Served by the same gunicorn command and settings as the real one, side by side::

    gunicorn -c deploy/gunicorn.conf.py 'bench.no_outbox_app:create_app()'

``POST /rest/call`` + ``PUT /rest/call`` against both is what the outbox costs the call
transaction. For the benchmark only: a call API without its events loses its history and
webhooks.
"""

from __future__ import annotations

from typing import Any

from flask import Flask


def disable_outbox() -> None:
    """Make ``call_api.calls.record_event`` a no-op in this process."""
    from call_api import calls

    def no_event(*_args: Any, **_kwargs: Any) -> None:
        return None

    calls.record_event = no_event  # type: ignore[assignment]


def create_app() -> Flask:
    from call_api import create_app as create_call_api

    disable_outbox()
    return create_call_api()
