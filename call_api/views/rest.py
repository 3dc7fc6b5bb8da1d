"""The original's call URLs: ``POST``/``PUT``/``GET /rest/call`` (scope ``call``)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from shared.errors import InvalidRequest

from .. import calls
from ..auth import current_claims, require_token
from ..numbers import normalise_number
from ..render import respond
from .params import body, form_encoded, text_param

bp = Blueprint("rest", __name__)


def policy() -> calls.Policy:
    return calls.Policy.from_config(current_app.config)


@bp.post("/rest/call")
@require_token("call")
def create_call() -> Response:
    """Open a call session: 201 with ``Location``; 409 over the limit; Idempotency-Key aware."""
    claims = current_claims()
    data = body()
    number = normalise_number(
        data.get("number"), current_app.config["CALL_DEFAULT_REGION"], form_encoded=form_encoded()
    )
    key = calls.validate_idempotency_key(request.headers.get("Idempotency-Key"))
    started = calls.start_call(
        str(claims["sub"]), str(claims["client_id"]), number, policy(), idempotency_key=key
    )
    response = respond(calls.as_dict(started.call), 201, root="call")
    response.headers["Location"] = f"/rest/call?token_call={started.call.token_call}"
    if started.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.put("/rest/call")
@require_token("call")
def end_call() -> Response:
    """End one of the caller's calls; ending an ended call returns it unchanged."""
    claims = current_claims()
    data = body()
    token_call = text_param(data, "token_call", required=False) or request.args.get("token_call")
    if not token_call:
        raise InvalidRequest("The 'token_call' parameter is required.")
    call = calls.end_call(str(token_call), policy(), subject=str(claims["sub"]))
    return respond(calls.as_dict(call), 200, root="call")


@bp.get("/rest/call")
@require_token("call")
def read_calls() -> Response:
    """One call with ``?token_call=…``, else the caller's ongoing calls across all apps."""
    claims = current_claims()
    token_call = request.args.get("token_call")
    if token_call is not None:
        call = calls.get_call(token_call, policy(), subject=str(claims["sub"]))
        return respond(calls.as_dict(call), 200, root="call")
    ongoing = calls.list_ongoing(str(claims["sub"]), policy())
    return respond({"calls": [calls.as_dict(c) for c in ongoing]}, 200, root="response")
