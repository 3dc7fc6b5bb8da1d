"""The call state machine: which state may follow which, and what each source may ask.

A call moves ``queued → ringing → in-progress → completed`` or ends ``busy``, ``no-answer``,
``failed``, ``canceled`` or ``expired``. Every state that is not final counts against the
user's limit; the original's two-valued ``status`` (``ongoing`` | ``ended``) is derived from
it, so existing clients keep their meaning. Plain data and functions: no database here.
"""

from __future__ import annotations

from shared.errors import InvalidRequest, InvalidTransition

QUEUED = "queued"
RINGING = "ringing"
IN_PROGRESS = "in-progress"
COMPLETED = "completed"
BUSY = "busy"
NO_ANSWER = "no-answer"
FAILED = "failed"
CANCELED = "canceled"
EXPIRED = "expired"

LIVE_STATES = (QUEUED, RINGING, IN_PROGRESS)
FINAL_STATES = (COMPLETED, BUSY, NO_ANSWER, FAILED, CANCELED, EXPIRED)
STATES = LIVE_STATES + FINAL_STATES

# Which state may follow which. A SIP dialer may see "busy" or a 200 OK without a 180
# Ringing first, so busy/failed/answered are allowed straight from queued; no-answer needs
# a phone that rang.
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RINGING, IN_PROGRESS, BUSY, FAILED, CANCELED, EXPIRED}),
    RINGING: frozenset({IN_PROGRESS, BUSY, NO_ANSWER, FAILED, CANCELED, EXPIRED}),
    IN_PROGRESS: frozenset({COMPLETED, FAILED, EXPIRED}),
    **{state: frozenset() for state in FINAL_STATES},
}

# What a dialer reports, and the state each event leads to.
DIALER_EVENTS: dict[str, str] = {
    "ringing": RINGING,
    "answered": IN_PROGRESS,
    "busy": BUSY,
    "no-answer": NO_ANSWER,
    "failed": FAILED,
    "hangup": COMPLETED,
}

# end_reason of a call ended by the dialer's event ("hangup": the callee or the network
# ended an answered call, "remote" to tell it from the app's own hang-up).
DIALER_END_REASONS = {
    "busy": "busy",
    "no-answer": "no-answer",
    "failed": "failed",
    "hangup": "remote",
}


def legacy_status(state: str) -> str:
    """The original's ``status``: ``ongoing`` while the call lives, then ``ended``."""
    return "ongoing" if state in LIVE_STATES else "ended"


def is_final(state: str) -> bool:
    return state in FINAL_STATES


def check(current: str, target: str) -> None:
    """Refuse an illegal transition with 409 ``invalid_transition``."""
    if target not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(
            f"A call that is {current} cannot become {target}.",
            extra={"state": current, "requested": target},
        )


def hang_up_target(current: str) -> str:
    """What the app's (or an admin's) hang-up makes of a live call: an answered call
    completes, one not yet answered is canceled."""
    return COMPLETED if current == IN_PROGRESS else CANCELED


def dialer_target(event: object) -> str:
    if not isinstance(event, str) or event not in DIALER_EVENTS:
        raise InvalidRequest(f"event must be one of: {', '.join(DIALER_EVENTS)}.")
    return DIALER_EVENTS[event]


def event_type(state: str) -> str:
    """The webhook ``type`` of the event reporting that a call entered ``state``."""
    return f"call.{state}"
