"""The original's call URLs: ``POST``/``PUT``/``GET /rest/call`` (scope ``call``)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from shared.errors import InvalidRequest

from .. import calls
from ..auth import current_claims, require_token
from ..numbers import normalise_number
from ..render import respond
from ..ssrf import check_webhook_url
from .params import body, form_encoded, parse_integer, text_param

bp = Blueprint("rest", __name__)


def policy() -> calls.Policy:
    return calls.Policy.from_config(current_app.config)


def _seconds(data: dict[str, object], name: str, high: int) -> int | None:
    raw = data.get(name)
    if raw is None or raw == "":
        return None
    value = parse_integer(raw) if isinstance(raw, str) else raw
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidRequest(f"'{name}' must be a whole number of seconds from 1 to {high}.")
    return value


def call_options(data: dict[str, object]) -> calls.CallOptions:
    """``time_limit`` (up to CALL_MAX_DURATION), ``ring_timeout`` and ``status_callback``."""
    callback = text_param(data, "status_callback", required=False) or None
    return calls.CallOptions(
        time_limit=_seconds(data, "time_limit", current_app.config["CALL_MAX_DURATION"]),
        ring_timeout=_seconds(data, "ring_timeout", calls.RING_TIMEOUT_MAX),
        status_callback=check_webhook_url(callback, current_app.config) if callback else None,
    )


@bp.post("/rest/call")
@require_token("call")
def create_call() -> Response:
    """Queue a call: 201 with ``Location``; 409 over the limit; Idempotency-Key aware.

    Optional ``time_limit`` and ``ring_timeout`` (seconds) and ``status_callback`` (a URL
    that receives this call's signed status events instead of the app's registered one).
    """
    claims = current_claims()
    data = body()
    number = normalise_number(
        data.get("number"), current_app.config["CALL_DEFAULT_REGION"], form_encoded=form_encoded()
    )
    options = call_options(data)
    key = calls.validate_idempotency_key(request.headers.get("Idempotency-Key"))
    started = calls.start_call(
        str(claims["sub"]),
        str(claims["client_id"]),
        number,
        policy(),
        idempotency_key=key,
        options=options,
    )
    response = respond(calls.as_dict(started.call), 201, root="call")
    response.headers["Location"] = f"/rest/call?token_call={started.call.token_call}"
    if started.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.put("/rest/call")
@require_token("call")
def end_call() -> Response:
    """Hang up one of the caller's calls, whatever its state (an answered call completes,
    one not yet answered is canceled); ending an ended call returns it unchanged."""
    claims = current_claims()
    data = body()
    token_call = text_param(data, "token_call", required=False) or request.args.get("token_call")
    if not token_call:
        raise InvalidRequest("The 'token_call' parameter is required.")
    call = calls.hang_up(str(token_call), policy(), subject=str(claims["sub"]))
    return respond(calls.as_dict(call), 200, root="call")


@bp.get("/rest/call")
@require_token("call")
def read_calls() -> Response:
    """One call with ``?token_call=…``, else the caller's ongoing calls across all apps."""
    claims = current_claims()
    token_call = request.args.get("token_call")
    if token_call is not None:
        call = calls.read_call(token_call, policy(), subject=str(claims["sub"]))
        return respond(calls.as_dict(call), 200, root="call")
    ongoing = calls.read_ongoing(str(claims["sub"]), policy())
    return respond({"calls": [calls.as_dict(c) for c in ongoing]}, 200, root="response")
