"""The admin API for webhooks (scope ``admin``): a client's endpoint, a call's events with
their delivery attempts, and redelivery."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from shared.errors import InvalidRequest

from .. import webhooks
from ..auth import require_token
from ..render import respond
from .params import body

bp = Blueprint("webhooks", __name__, url_prefix="/admin")


def _flag(data: dict[str, object], name: str) -> bool:
    """A JSON boolean, or from a form ``true``/``false``; absent is false."""
    value = data.get(name, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be true or false.")
    return value


@bp.put("/clients/<client_id>/webhook")
@require_token("admin")
def set_webhook(client_id: str) -> Response:
    """``{"url": "https://…" | null, "rotate_secret": false}``: 201 created (with the new
    secret), 200 updated (the secret only when rotated)."""
    data = body()
    if "url" not in data:
        raise InvalidRequest("The 'url' parameter is required (a URL, or null for none).")
    url = data["url"]
    if url is not None and not isinstance(url, str):
        raise InvalidRequest("'url' must be a string or null.")
    change = webhooks.set_endpoint(
        client_id, url or None, current_app.config, _flag(data, "rotate_secret")
    )
    return respond(
        webhooks.endpoint_dict(change.endpoint, change.secret),
        201 if change.created else 200,
        root="webhook",
    )


@bp.get("/clients/<client_id>/webhook")
@require_token("admin")
def get_webhook(client_id: str) -> Response:
    """The endpoint without its secret (``"secret": null``); 404 if none."""
    return respond(webhooks.endpoint_dict(webhooks.get_endpoint(client_id)), root="webhook")


@bp.delete("/clients/<client_id>/webhook")
@require_token("admin")
def delete_webhook(client_id: str) -> Response:
    """204; 404 if the client has no endpoint."""
    webhooks.delete_endpoint(client_id)
    return Response(status=204)


@bp.get("/calls/<token_call>/events")
@require_token("admin")
def call_events(token_call: str) -> Response:
    """Every event of the call, oldest first, each with its delivery and attempt log."""
    return respond(webhooks.events_for_call(token_call), root="response")


@bp.post("/events/<event_id>/redeliver")
@require_token("admin")
def redeliver(event_id: str) -> Response:
    """202: the event is pending again and due now, with a fresh retry window."""
    return respond(webhooks.redeliver(event_id, current_app.config), 202, root="event")
