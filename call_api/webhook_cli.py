"""``call-api worker`` (deliver webhooks until stopped) and ``call-api webhooks …``: apps'
status-callback URLs and secrets, and ``receive``, a development receiver that verifies
what the worker sends."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from shared.cli import UsageProblem, service_errors

MAX_RECEIVED_BODY = 1024 * 1024


def _check_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from .worker import check_worker_id

    if value is None:
        return None
    try:
        return check_worker_id(value)
    except ValueError as exc:
        raise UsageProblem(f"Invalid value for '--id': {exc}.") from None


@click.command("worker")
@click.option(
    "--once",
    is_flag=True,
    help="Deliver what is due now, then exit (retries scheduled for later wait for the "
    "next run). [default: run until SIGTERM or SIGINT]",
)
@click.option(
    "--id",
    "worker_id",
    metavar="NAME",
    callback=_check_id,
    help="This worker's name in the attempt log and in its leases. [default: hostname:pid]",
)
@with_appcontext
def worker(once: bool, worker_id: str | None) -> None:
    """Deliver webhook events until stopped (SIGTERM/SIGINT finish the batch in hand).

    Settings: CALL_WEBHOOK_TIMEOUT, CALL_WEBHOOK_LEASE_SECONDS, CALL_WEBHOOK_BACKOFF_BASE,
    CALL_WEBHOOK_BACKOFF_MAX, CALL_WEBHOOK_RETRY_FOR, CALL_WEBHOOK_POLL_INTERVAL,
    CALL_WEBHOOK_BATCH, CALL_WEBHOOK_ALLOWED_NETWORKS. Prints a JSON summary when it stops.
    """
    from .worker import run_worker

    summary = run_worker(current_app._get_current_object(), worker_id, once)  # type: ignore[attr-defined]
    click.echo(json.dumps(summary))


@click.group("webhooks")
def webhooks() -> None:
    """Apps' status-callback URLs and signing secrets."""


@webhooks.command("set")
@click.argument("client_id")
@click.option(
    "--url",
    required=True,
    help="The client's status-callback URL; '' for none (the client gives a "
    "status_callback per call).",
)
@click.option(
    "--rotate-secret",
    is_flag=True,
    help="Issue a new signing secret; the old one stops signing at once. [default: keep it]",
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"client_id", "url", "secret"}. [default: text]'
)
@with_appcontext
def webhooks_set(client_id: str, url: str, rotate_secret: bool, as_json: bool) -> None:
    """Register or change CLIENT_ID's webhook URL; prints the secret once (on creation or
    rotation)."""
    from .webhooks import set_endpoint

    with service_errors():
        change = set_endpoint(client_id, url or None, current_app.config, rotate_secret)
    endpoint = change.endpoint
    if as_json:
        click.echo(
            json.dumps(
                {"client_id": endpoint.client_id, "url": endpoint.url, "secret": change.secret}
            )
        )
        return
    verb = "registered" if change.created else "updated"
    click.echo(f"webhook endpoint {verb} for {endpoint.client_id}: {endpoint.url or '(no URL)'}")
    if change.secret:
        click.echo(f"signing secret (shown once; keep it with the app): {change.secret}")


@webhooks.command("show")
@click.argument("client_id")
@with_appcontext
def webhooks_show(client_id: str) -> None:
    """Print CLIENT_ID's webhook endpoint as JSON (the secret is never shown again)."""
    from .webhooks import endpoint_dict, get_endpoint

    with service_errors():
        click.echo(json.dumps(endpoint_dict(get_endpoint(client_id))))


@webhooks.command("delete")
@click.argument("client_id")
@with_appcontext
def webhooks_delete(client_id: str) -> None:
    """Forget CLIENT_ID's webhook URL and secret (its pending events then fail)."""
    from .webhooks import delete_endpoint

    with service_errors():
        delete_endpoint(client_id)
    click.echo(json.dumps({"client_id": client_id, "deleted": True}))


def verify_delivery(secret: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """What ``receive`` prints for one POST: the event's summary if the Standard Webhooks
    signature verifies, else ``"verified": false`` and why."""
    from standardwebhooks.webhooks import Webhook

    webhook_id = headers.get("webhook-id")
    try:
        event = Webhook(secret).verify(body, headers)
        data = event.get("data") if isinstance(event, dict) else None
        data = data if isinstance(data, dict) else {}
    except Exception as exc:  # a bad signature, header, timestamp or body: all "not verified"
        return {
            "webhook_id": webhook_id,
            "verified": False,
            "error": str(exc) or type(exc).__name__,
        }
    return {
        "webhook_id": webhook_id,
        "type": event.get("type"),
        "state": data.get("state"),
        "token_call": data.get("token_call"),
        "verified": True,
    }


class Receiver(ThreadingHTTPServer):
    """Several workers send batches at once: the standard library's backlog of 5 pending
    connections reset some of them."""

    daemon_threads = True
    request_queue_size = 128


def make_receiver(host: str, port: int, secret: str) -> ThreadingHTTPServer:
    """A development webhook receiver: 204 for a verified POST, 401 otherwise; one JSON
    line per POST on standard output."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "ClickCallReceiver/1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_RECEIVED_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            line = verify_delivery(secret, body, headers)
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            self.send_response(204 if line["verified"] else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # standard output carries the events; no access log mixed in

    return Receiver((host, port), Handler)


@webhooks.command("receive")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    required=True,
    help="Port to listen on (0: any free one, named on standard error).",
)
@click.option("--secret", required=True, help="The client's signing secret (whsec_…).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
def webhooks_receive(port: int, secret: str, host: str) -> None:
    """A development receiver: verify each POST with the Standard Webhooks signature,
    answer 204 (401 if it does not verify) and print one JSON line per event. Needs no
    database; stops on Ctrl-C."""
    from standardwebhooks.webhooks import Webhook

    try:
        Webhook(secret)
    except Exception as exc:
        raise UsageProblem(f"Invalid value for '--secret': {exc}.") from None
    server = make_receiver(host, port, secret)
    click.echo(
        f"receiving webhooks on http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)",
        err=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
