"""The dialer interface (scope ``dialer``, client-credentials tokens): a phone system
claims queued calls and reports what becomes of them. JSON only."""

from __future__ import annotations

from flask import Blueprint, Response

from shared.errors import InvalidRequest

from .. import dialer
from ..auth import current_claims, require_token
from ..render import respond
from .params import body
from .rest import policy

bp = Blueprint("dialer", __name__, url_prefix="/dialer")


def _number(data: dict[str, object], name: str, default: float, high: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise InvalidRequest(f"'{name}' must be a number from 0 to {high:g}.")
    return float(value)


@bp.post("/poll")
@require_token("dialer")
def poll() -> Response:
    """Renew this dialer's leases, learn which of its calls ended, claim queued calls.

    Body ``{"dialer_id": …, "max_calls": 0–50 (default 1), "wait": 0–25 s (default 0)}``.
    """
    data = body()
    dialer_id = dialer.check_dialer_id(data.get("dialer_id"))
    max_calls = data.get("max_calls", 1)
    if isinstance(max_calls, float) and max_calls.is_integer():
        max_calls = int(max_calls)  # an integer in JSON Schema's sense: 2.0 is 2, 2.5 is not
    if (
        isinstance(max_calls, bool)
        or not isinstance(max_calls, int)
        or not 0 <= max_calls <= dialer.MAX_BATCH
    ):
        raise InvalidRequest(f"'max_calls' must be an integer from 0 to {dialer.MAX_BATCH}.")
    wait = _number(data, "wait", 0, dialer.MAX_WAIT)
    pol = policy()
    result = dialer.poll(str(current_claims()["client_id"]), dialer_id, max_calls, wait, pol)
    return respond(
        {
            "dialer_id": dialer_id,
            "lease_seconds": pol.lease_seconds,
            "calls": [dialer.claimed_dict(c) for c in result.claimed],
            # Every live call this dialer holds (renewed by this poll): one it does not know
            # (it restarted under the same dialer_id) it must end, reporting "failed".
            "held": [c.token_call for c in result.held],
            "ended": [
                {"token_call": c.token_call, "state": c.state, "end_reason": c.end_reason}
                for c in result.ended
            ],
        },
        xml=False,
    )


@bp.post("/calls/<token_call>/events")
@require_token("dialer")
def event(token_call: str) -> Response:
    """Report ``{"dialer_id": …, "event": ringing|answered|busy|no-answer|failed|hangup}``.

    200 with the call (``Dialer-Event-Applied: false`` when it was a retry and changed
    nothing); 409 ``invalid_transition`` or ``lease_lost`` when the dialer should drop it.
    """
    data = body()
    dialer_id = dialer.check_dialer_id(data.get("dialer_id"))
    name = data.get("event")
    call, changed = dialer.report(
        str(current_claims()["client_id"]), dialer_id, token_call, name, policy()
    )
    response = respond(dialer.claimed_dict(call), xml=False)
    response.headers["Dialer-Event-Applied"] = "true" if changed else "false"
    return response
