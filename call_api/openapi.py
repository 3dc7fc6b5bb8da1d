"""The OpenAPI 3.1 description of the call API (served at ``/openapi.json``).

Kept beside the code and checked against it by ``tests/call_api/test_openapi.py``
(openapi-spec-validator, and schemathesis driving the live app).
"""

from __future__ import annotations

from typing import Any

from flask import current_app, has_app_context

from .calls import RING_TIMEOUT_DEFAULT, RING_TIMEOUT_MAX
from .dialer import MAX_BATCH, MAX_WAIT
from .lifecycle import DIALER_EVENTS, STATES

# Every end_reason a call may carry: the app's hang-up, an admin's force-end, expiry, what
# the dialer reported (``lifecycle.DIALER_END_REASONS``) and a dialer that went away.
END_REASONS = [
    "hangup",
    "admin",
    "expired",
    "remote",
    "busy",
    "no-answer",
    "failed",
    "dialer-lost",
    "time-limit",
    "revoked",
]

ERRORS = {
    "400": "Bad request: a parameter is missing or invalid (`invalid_request`, `invalid_number`).",
    "401": "Missing, expired, revoked or invalid access token (RFC 6750 `WWW-Authenticate`).",
    "403": "The token lacks the needed scope (`insufficient_scope`).",
    "404": "No such call (or it belongs to someone else).",
    "406": "Neither JSON nor XML is acceptable to the client.",
    "409": "The user's ongoing-call limit is reached (`max_calls_exceeded`).",
    "413": "The body is too large.",
    "415": "The body is neither form-encoded nor JSON.",
    "422": "The Idempotency-Key was used with another body.",
    "503": "The database is unavailable; retry.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}, "application/xml": {"schema": schema}}


def _ok(
    description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": _content(schema)}
    if headers:
        out["headers"] = headers
    return out


def _errors(*codes: str, **descriptions: str) -> dict[str, Any]:
    """Error responses; ``descriptions`` (``e404="…"``) replace the generic wording."""
    out: dict[str, Any] = {}
    for code in codes:
        description = descriptions.get(f"e{code}", ERRORS[code])
        out[code] = {"description": description, "content": _content(_ref("Error"))}
        if code in ("401", "403"):
            out[code]["headers"] = {
                "WWW-Authenticate": {
                    "schema": {"type": "string"},
                    "description": "RFC 6750 challenge",
                }
            }
    return out


FORMAT = {
    "name": "format",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "enum": ["json", "xml"]},
    "description": "Response format (instead of the Accept header).",
}
SUB = {
    "name": "sub",
    "in": "path",
    "required": True,
    # No "/" (it would select another route) and no control characters (the path converter
    # does not match a newline): real subjects are UUIDs or client ids.
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[^/\\x00-\\x1f\\x7f]+$",
    },
    "description": "The user's stable id (the token's `sub`).",
}
TOKEN_CALL = {
    "name": "token_call",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}
COMMON_AUTH_ERRORS = ("400", "401", "403", "406", "503")
CLIENT_ID = {
    "name": "client_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~:-]{1,64}$"},
    "description": "The OAuth client (app) whose status callbacks these are.",
}
EVENT_ID = {
    "name": "event_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 40},
    "description": "The event's `event_id` (`msg_…`, the `webhook-id` header of its POSTs).",
}
DIALER_SECURITY = [{"dialerClient": ["dialer"]}]
ADMIN_SECURITY = [{"adminClient": ["admin"]}]
DIALER_ERRORS = {
    "e400": "Bad request: `dialer_id`, `event`, `max_calls` or `wait` is invalid "
    "(`invalid_request`).",
    "e403": "The token lacks the `dialer` scope, or was issued for a person rather than to "
    "the dialer's own client (`insufficient_scope`).",
}
WEBHOOK_PUT = {
    "type": "object",
    "required": ["url"],
    "properties": {
        "url": {
            "type": ["string", "null"],
            "maxLength": 2048,
            "examples": ["https://app.example.com/clickcall/status"],
            "description": "Where this client's call events are POSTed (`null`: nowhere; "
            "per-call `status_callback` URLs still work). Checked against SSRF: in "
            "production https only, and no loopback, private, link-local or metadata "
            "address unless `CALL_WEBHOOK_ALLOWED_NETWORKS` allows it.",
        },
        "rotate_secret": {
            "type": "boolean",
            "default": False,
            "description": "Issue a new signing secret (the old one stops signing at once).",
        },
    },
}


def spec(max_duration: int | None = None) -> dict[str, Any]:
    """The document; ``max_duration`` (the bound of a call's ``time_limit``) is by default
    the app's ``CALL_MAX_DURATION``."""
    if max_duration is None:
        max_duration = current_app.config["CALL_MAX_DURATION"] if has_app_context() else 14400
    document = _document(max_duration)
    for path, item in document["paths"].items():
        if path.startswith("/admin/"):
            for operation in item.values():
                operation["security"] = ADMIN_SECURITY
    return document


def _document(max_duration: int) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ClickCall call API",
            "version": "1.0.0",
            "description": (
                "Open, end, read and list call sessions for the user who authorized an app. "
                "A user never has more ongoing calls than their limit, across all apps. "
                "A call moves queued → ringing → in-progress → completed (or ends busy, "
                "no-answer, failed, canceled or expired) as a dialer (a phone system, under "
                "/dialer) reports it; each transition is an event delivered to the app as a "
                "signed webhook (Standard Webhooks). "
                "Tokens are RFC 9068 JWTs from the ClickCall authorization server; send them "
                "as `Authorization: Bearer …` (also accepted: `Authentication: Bearer …`, or "
                "an `access_token` query/form parameter)."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8889"}],
        "security": [{"bearer": []}],
        "paths": {
            "/rest/call": {
                "post": {
                    "summary": "Start a call session",
                    "operationId": "createCall",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 255,
                                "pattern": "^[!-~]+$",
                            },
                            "description": "Retries with the same key and body return the "
                            "same call.",
                        },
                        FORMAT,
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {"schema": _ref("NewCall")},
                            "application/json": {"schema": _ref("NewCall")},
                        },
                    },
                    "responses": {
                        "201": _ok(
                            "The call, started (or replayed for a repeated Idempotency-Key).",
                            _ref("Call"),
                            {
                                "Location": {
                                    "schema": {"type": "string"},
                                    "description": "/rest/call?token_call=…",
                                }
                            },
                        ),
                        **_errors(*COMMON_AUTH_ERRORS, "409", "413", "415", "422"),
                    },
                },
                "put": {
                    "summary": "End a call (idempotent)",
                    "operationId": "endCall",
                    "parameters": [FORMAT],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {"schema": _ref("EndCall")},
                            "application/json": {"schema": _ref("EndCall")},
                        },
                    },
                    "responses": {
                        "200": _ok("The ended call.", _ref("Call")),
                        **_errors(*COMMON_AUTH_ERRORS, "404", "413", "415"),
                    },
                },
                "get": {
                    "summary": "Read one call, or list the caller's ongoing calls",
                    "operationId": "readCalls",
                    "parameters": [
                        {
                            "name": "token_call",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Without it: the caller's ongoing calls.",
                        },
                        FORMAT,
                    ],
                    "responses": {
                        "200": _ok(
                            "One call, or `{calls: [...]}`.",
                            {"oneOf": [_ref("Call"), _ref("CallList")]},
                        ),
                        **_errors(*COMMON_AUTH_ERRORS, "404"),
                    },
                },
            },
            "/admin/users/{sub}": {
                "get": {
                    "summary": "A user's limit, ongoing count and recent calls",
                    "operationId": "adminUser",
                    "parameters": [SUB, FORMAT],
                    "responses": {
                        "200": _ok("The user.", _ref("UserSummary")),
                        **_errors(*COMMON_AUTH_ERRORS),
                    },
                },
            },
            "/admin/users/{sub}/calls": {
                "get": {
                    "summary": "A user's calls, newest first",
                    "operationId": "adminUserCalls",
                    "parameters": [
                        SUB,
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "string",
                                "enum": ["ongoing", "ended", "all", *STATES],
                                "default": "all",
                            },
                            "description": "ongoing, ended, all, or one lifecycle state.",
                        },
                        {
                            "name": "page",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 1000000,
                                "default": 1,
                            },
                        },
                        {
                            "name": "per_page",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 100,
                                "default": 20,
                            },
                        },
                        FORMAT,
                    ],
                    "responses": {
                        "200": _ok("One page of calls.", _ref("CallPage")),
                        **_errors(*COMMON_AUTH_ERRORS),
                    },
                },
            },
            "/admin/users/{sub}/limit": {
                "put": {
                    "summary": "Set a user's ongoing-call limit",
                    "operationId": "adminSetLimit",
                    "parameters": [SUB, FORMAT],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _ref("Limit")},
                            "application/x-www-form-urlencoded": {"schema": _ref("Limit")},
                        },
                    },
                    "responses": {
                        "200": _ok("The user with the new limit.", _ref("UserSummary")),
                        **_errors(*COMMON_AUTH_ERRORS, "413", "415"),
                    },
                },
            },
            "/admin/calls/{token_call}": {
                "get": {
                    "summary": "Any call",
                    "operationId": "adminCall",
                    "parameters": [TOKEN_CALL, FORMAT],
                    "responses": {
                        "200": _ok("The call.", _ref("Call")),
                        **_errors(*COMMON_AUTH_ERRORS, "404"),
                    },
                },
            },
            "/admin/calls/{token_call}/end": {
                "post": {
                    "summary": "Force-end a call (end_reason admin)",
                    "operationId": "adminEndCall",
                    "parameters": [TOKEN_CALL, FORMAT],
                    "responses": {
                        "200": _ok("The ended call.", _ref("Call")),
                        **_errors(*COMMON_AUTH_ERRORS, "404"),
                    },
                },
            },
            "/admin/calls/{token_call}/events": {
                "get": {
                    "summary": "A call's events (its history) with their webhook deliveries",
                    "operationId": "adminCallEvents",
                    "parameters": [TOKEN_CALL, FORMAT],
                    "responses": {
                        "200": _ok("The events, oldest first.", _ref("CallEvents")),
                        **_errors(*COMMON_AUTH_ERRORS, "404"),
                    },
                },
            },
            "/admin/events/{event_id}/redeliver": {
                "post": {
                    "summary": "Deliver an event again (pending, due now, retry window restarted)",
                    "operationId": "adminRedeliverEvent",
                    "parameters": [EVENT_ID, FORMAT],
                    "responses": {
                        "202": _ok("The event, pending again.", _ref("CallEvent")),
                        **_errors(
                            *COMMON_AUTH_ERRORS,
                            "404",
                            "409",
                            e404="No such event.",
                            e409="The event has nowhere to go (no webhook URL), or a worker "
                            "is delivering it right now.",
                        ),
                    },
                },
            },
            "/admin/clients/{client_id}/webhook": {
                "put": {
                    "summary": "Register or change a client's status-callback URL",
                    "operationId": "adminSetWebhook",
                    "parameters": [CLIENT_ID, FORMAT],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": WEBHOOK_PUT},
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "required": ["url"],
                                    "properties": {
                                        "url": {
                                            "type": "string",
                                            "maxLength": 2048,
                                            "description": "Empty: no URL.",
                                        },
                                        "rotate_secret": {
                                            "type": "string",
                                            "enum": ["true", "false"],
                                        },
                                    },
                                }
                            },
                        },
                    },
                    "responses": {
                        "201": _ok(
                            "Created, with its signing secret (shown this once).",
                            _ref("WebhookEndpoint"),
                        ),
                        "200": _ok(
                            "Updated (the secret only when rotated).", _ref("WebhookEndpoint")
                        ),
                        **_errors(
                            *COMMON_AUTH_ERRORS,
                            "413",
                            "415",
                            e400="Bad request: the URL is refused (scheme, SSRF) or a "
                            "parameter is invalid (`invalid_request`).",
                        ),
                    },
                },
                "get": {
                    "summary": "A client's status-callback URL (never its secret)",
                    "operationId": "adminGetWebhook",
                    "parameters": [CLIENT_ID, FORMAT],
                    "responses": {
                        "200": _ok("The endpoint (`secret` null).", _ref("WebhookEndpoint")),
                        **_errors(
                            *COMMON_AUTH_ERRORS, "404", e404="This client has no webhook endpoint."
                        ),
                    },
                },
                "delete": {
                    "summary": "Forget a client's status-callback URL and secret",
                    "operationId": "adminDeleteWebhook",
                    "parameters": [CLIENT_ID, FORMAT],
                    "responses": {
                        "204": {"description": "Deleted."},
                        **_errors(
                            *COMMON_AUTH_ERRORS, "404", e404="This client has no webhook endpoint."
                        ),
                    },
                },
            },
            "/dialer/poll": {
                "post": {
                    "summary": "A dialer claims queued calls and learns which of its calls ended",
                    "description": "Renews the leases of the calls this (client, `dialer_id`) "
                    "holds, reports once each of them that ended without the dialer (`ended`: "
                    "drop them), and claims up to `max_calls` queued calls, oldest first, "
                    "under a lease of `lease_seconds` (`CALL_DIALER_LEASE_SECONDS`). Replicas "
                    "never claim the same call. A call whose lease lapses goes back to the "
                    "queue while queued (up to `CALL_DIALER_MAX_CLAIMS` claims, then it "
                    "fails), and ends `failed` (ringing) or `completed` (in-progress) with "
                    "`end_reason: dialer-lost`. With `wait` the request is held until there "
                    "is something to return (checked every 0.2 s).",
                    "operationId": "dialerPoll",
                    "security": DIALER_SECURITY,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("DialerPoll")}},
                    },
                    "responses": {
                        "200": {
                            "description": "Claimed calls and ended ones (both may be empty).",
                            "content": {"application/json": {"schema": _ref("DialerPollResult")}},
                        },
                        **_errors("400", "401", "403", "406", "413", "415", "503", **DIALER_ERRORS),
                    },
                },
            },
            "/dialer/calls/{token_call}/events": {
                "post": {
                    "summary": "A dialer reports what happened to a call it holds",
                    "description": "Events are idempotent: a retry (an event already applied "
                    "to this call) changes nothing and answers 200 with "
                    "`Dialer-Event-Applied: false`. An event the state machine does not allow "
                    "now is a 409 `invalid_transition` (say `answered` after the app hung up), "
                    "a call this dialer no longer holds a 409 `lease_lost`: in both cases the "
                    "dialer drops the call. A call this dialer client never claimed is a 404.",
                    "operationId": "dialerEvent",
                    "security": DIALER_SECURITY,
                    "parameters": [TOKEN_CALL],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("DialerEvent")}},
                    },
                    "responses": {
                        "200": {
                            "description": "The call after the event (lease renewed).",
                            "headers": {
                                "Dialer-Event-Applied": {
                                    "schema": {"type": "string", "enum": ["true", "false"]},
                                    "description": "false: a retry that changed nothing.",
                                }
                            },
                            "content": {"application/json": {"schema": _ref("DialerCall")}},
                        },
                        **_errors(
                            "400",
                            "401",
                            "403",
                            "404",
                            "406",
                            "409",
                            "413",
                            "415",
                            "503",
                            e404="No such call among those this dialer client claimed.",
                            e409="`invalid_transition` (with `state` and `requested`) or "
                            "`lease_lost` (with `state`): drop the call.",
                            **DIALER_ERRORS,
                        ),
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                },
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness and readiness",
                    "operationId": "healthz",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Up, database reachable",
                            "content": {"application/json": {"schema": _ref("Health")}},
                        },
                        "503": {
                            "description": ERRORS["503"],
                            "content": {"application/json": {"schema": _ref("Error")}},
                        },
                    },
                },
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: database reachable and verification keys loaded",
                    "operationId": "readyz",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Ready for traffic",
                            "content": {"application/json": {"schema": _ref("Health")}},
                        },
                        "503": {
                            "description": "The database is unavailable or no keys are loaded.",
                            "content": {"application/json": {"schema": _ref("Error")}},
                        },
                    },
                },
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                    },
                },
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "adminClient": {
                    "type": "oauth2",
                    "description": "An operator's own client (client_credentials), scope "
                    "`admin`; the token is sent as `Authorization: Bearer …`.",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "http://127.0.0.1:8888/oauth/token",
                            "scopes": {"admin": "The admin interface."},
                        }
                    },
                },
                "dialerClient": {
                    "type": "oauth2",
                    "description": "A phone system's own client (client_credentials only), "
                    "scope `dialer`; a token issued for a person is refused even with that "
                    "scope. Sent as `Authorization: Bearer …`.",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "http://127.0.0.1:8888/oauth/token",
                            "scopes": {"dialer": "Claim calls and report their events."},
                        }
                    },
                },
            },
            "schemas": {
                "NewCall": {
                    "type": "object",
                    "required": ["number"],
                    "properties": {
                        "number": {
                            "type": "string",
                            "examples": ["+14155550123"],
                            "description": (
                                "International form (+, digits, spaces, dashes, parentheses; "
                                "no letters or extension). In a form body encode + as %2B. "
                                "Stored as E.164."
                            ),
                        },
                        "time_limit": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": max_duration,
                            "description": "Seconds of talk at most (the dialer hangs up "
                            "then); default and upper bound `CALL_MAX_DURATION`.",
                        },
                        "ring_timeout": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": RING_TIMEOUT_MAX,
                            "default": RING_TIMEOUT_DEFAULT,
                            "description": "Seconds the phone may ring before the call ends "
                            "`no-answer`.",
                        },
                        "status_callback": {
                            "type": "string",
                            "maxLength": 2048,
                            "description": "A URL that receives this call's signed status "
                            "events instead of the client's registered one (same SSRF rules).",
                        },
                    },
                },
                "EndCall": {
                    "type": "object",
                    "required": ["token_call"],
                    "properties": {"token_call": {"type": "string"}},
                },
                "Limit": {
                    "type": "object",
                    "required": ["max_ongoing"],
                    "properties": {
                        "max_ongoing": {"type": ["integer", "null"], "minimum": 0, "maximum": 10000}
                    },
                },
                "Call": {
                    "type": "object",
                    "required": [
                        "token_call",
                        "number",
                        "status",
                        "started_at",
                        "ended_at",
                        "duration",
                        "end_reason",
                        "client_id",
                        "subject",
                        "state",
                        "ringing_at",
                        "answered_at",
                        "time_limit",
                        "ring_timeout",
                        "status_callback",
                    ],
                    "properties": {
                        "token_call": {"type": "string"},
                        "number": {"type": "string", "pattern": "^\\+[1-9][0-9]{1,14}$"},
                        "status": {
                            "type": "string",
                            "enum": ["ongoing", "ended"],
                            "description": "`ongoing` while the call is live (queued, ringing "
                            "or in-progress), then `ended`.",
                        },
                        "started_at": {"type": "string", "format": "date-time"},
                        "ended_at": {"type": ["string", "null"], "format": "date-time"},
                        "duration": {
                            "type": ["integer", "null"],
                            "minimum": 0,
                            "description": "Seconds from the answer to the end (0 if never "
                            "answered); null while live.",
                        },
                        "end_reason": {"enum": [*END_REASONS, None]},
                        "client_id": {"type": "string"},
                        "subject": {"type": "string"},
                        "state": _ref("CallState"),
                        "ringing_at": {"type": ["string", "null"], "format": "date-time"},
                        "answered_at": {"type": ["string", "null"], "format": "date-time"},
                        "time_limit": {
                            "type": ["integer", "null"],
                            "minimum": 1,
                            "description": "Seconds of talk at most (null: a call made "
                            "before calls had one).",
                        },
                        "ring_timeout": {"type": ["integer", "null"], "minimum": 1},
                        "status_callback": {"type": ["string", "null"]},
                    },
                },
                "CallState": {
                    "type": "string",
                    "enum": list(STATES),
                    "description": "queued → ringing → in-progress → completed, or ended busy, "
                    "no-answer, failed, canceled (hung up before the answer) or expired. "
                    "queued, ringing and in-progress count against the user's limit.",
                },
                "DialerCall": {
                    "description": "A call as its dialer sees it: the call and its lease.",
                    "allOf": [
                        _ref("Call"),
                        {
                            "type": "object",
                            "required": ["dialer_id", "lease_expires_at", "claims"],
                            "properties": {
                                "dialer_id": {"type": ["string", "null"]},
                                "lease_expires_at": {
                                    "type": ["string", "null"],
                                    "format": "date-time",
                                    "description": "Until when this dialer holds the call "
                                    "(renewed by each poll and event); null once ended.",
                                },
                                "claims": {"type": "integer", "minimum": 0},
                            },
                        },
                    ],
                },
                "DialerPoll": {
                    "type": "object",
                    "required": ["dialer_id"],
                    "properties": {
                        "dialer_id": {
                            "type": "string",
                            "pattern": "^[A-Za-z0-9._:-]{1,128}$",
                            "description": "This replica's name (a lease is held by the "
                            "client and this id).",
                        },
                        "max_calls": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": MAX_BATCH,
                            "default": 1,
                            "description": "Queued calls to claim at most (0: only renew "
                            "leases and learn of ended calls).",
                        },
                        "wait": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": MAX_WAIT,
                            "default": 0,
                            "description": "Seconds to hold the request open until there is "
                            "something to return (a long poll).",
                        },
                    },
                },
                "DialerPollResult": {
                    "type": "object",
                    "required": ["dialer_id", "lease_seconds", "calls", "held", "ended"],
                    "properties": {
                        "dialer_id": {"type": "string"},
                        "lease_seconds": {"type": "integer", "minimum": 1},
                        "calls": {"type": "array", "items": _ref("DialerCall")},
                        "held": {
                            "type": "array",
                            "description": "The token_call of every live call this dialer "
                            "holds, its lease renewed by this poll (claimed before this poll). "
                            "A dialer that finds one it does not know (it restarted under the "
                            "same dialer_id) must end it by reporting `failed`.",
                            "items": {"type": "string"},
                        },
                        "ended": {
                            "type": "array",
                            "description": "Calls this dialer holds that ended without it (the "
                            "app hung up, an admin ended them, they expired): drop them. Each "
                            "is reported once.",
                            "items": {
                                "type": "object",
                                "required": ["token_call", "state", "end_reason"],
                                "properties": {
                                    "token_call": {"type": "string"},
                                    "state": _ref("CallState"),
                                    "end_reason": {"enum": [*END_REASONS, None]},
                                },
                            },
                        },
                    },
                },
                "DialerEvent": {
                    "type": "object",
                    "required": ["dialer_id", "event"],
                    "properties": {
                        "dialer_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                        "event": {
                            "type": "string",
                            "enum": list(DIALER_EVENTS),
                            "description": "ringing → ringing, answered → in-progress, busy, "
                            "no-answer, failed, hangup → completed.",
                        },
                    },
                },
                "WebhookEndpoint": {
                    "type": "object",
                    "required": ["client_id", "url", "secret", "created_at", "updated_at"],
                    "properties": {
                        "client_id": {"type": "string"},
                        "url": {"type": ["string", "null"]},
                        "secret": {
                            "type": ["string", "null"],
                            "pattern": "^whsec_",
                            "description": "The signing secret, only in the answer that "
                            "created or rotated it (else null): keep it.",
                        },
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                    },
                },
                "CallEvents": {
                    "type": "object",
                    "required": ["token_call", "events"],
                    "properties": {
                        "token_call": {"type": "string"},
                        "events": {"type": "array", "items": _ref("CallEvent")},
                    },
                },
                "CallEvent": {
                    "type": "object",
                    "description": "One transition of a call and the delivery of its webhook.",
                    "required": [
                        "event_id",
                        "type",
                        "source",
                        "created_at",
                        "url",
                        "delivery",
                        "attempts",
                        "next_attempt_at",
                        "delivered_at",
                        "last_status",
                        "last_error",
                        "payload",
                        "attempt_log",
                    ],
                    "properties": {
                        "event_id": {"type": "string"},
                        "type": {"type": "string", "enum": [f"call.{s}" for s in STATES]},
                        "source": {"type": "string", "enum": ["app", "dialer", "admin", "system"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "url": {"type": ["string", "null"]},
                        "delivery": {
                            "type": "string",
                            "enum": ["pending", "delivered", "failed", "none"],
                            "description": "none: no URL was registered when it happened.",
                        },
                        "attempts": {"type": "integer", "minimum": 0},
                        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                        "delivered_at": {"type": ["string", "null"], "format": "date-time"},
                        "last_status": {"type": ["integer", "null"]},
                        "last_error": {"type": ["string", "null"]},
                        "payload": _ref("WebhookPayload"),
                        "attempt_log": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": [
                                    "attempted_at",
                                    "worker",
                                    "status_code",
                                    "error",
                                    "duration_ms",
                                ],
                                "properties": {
                                    "attempted_at": {"type": "string", "format": "date-time"},
                                    "worker": {"type": "string"},
                                    "status_code": {"type": ["integer", "null"]},
                                    "error": {"type": ["string", "null"]},
                                    "duration_ms": {"type": "integer", "minimum": 0},
                                },
                            },
                        },
                    },
                },
                "WebhookPayload": {
                    "type": "object",
                    "description": "The body POSTed to the app, signed per Standard Webhooks "
                    "(`webhook-id`, `webhook-timestamp`, `webhook-signature`).",
                    "required": ["type", "timestamp", "data"],
                    "properties": {
                        "type": {"type": "string", "enum": [f"call.{s}" for s in STATES]},
                        "timestamp": {"type": "string", "format": "date-time"},
                        "data": _ref("Call"),
                    },
                },
                "CallList": {
                    "type": "object",
                    "required": ["calls"],
                    "properties": {"calls": {"type": "array", "items": _ref("Call")}},
                },
                "CallPage": {
                    "type": "object",
                    "required": ["subject", "status", "page", "per_page", "total", "next", "calls"],
                    "properties": {
                        "subject": {"type": "string"},
                        "status": {"type": "string", "enum": ["ongoing", "ended", "all", *STATES]},
                        "page": {"type": "integer"},
                        "per_page": {"type": "integer"},
                        "total": {"type": "integer"},
                        "next": {"type": ["string", "null"]},
                        "calls": {"type": "array", "items": _ref("Call")},
                    },
                },
                "UserSummary": {
                    "type": "object",
                    "required": [
                        "subject",
                        "max_ongoing",
                        "limit_source",
                        "ongoing",
                        "recent_calls",
                    ],
                    "properties": {
                        "subject": {"type": "string"},
                        "max_ongoing": {"type": "integer"},
                        "limit_source": {"type": "string", "enum": ["user", "default"]},
                        "ongoing": {"type": "integer"},
                        "recent_calls": {"type": "array", "items": _ref("Call")},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "error_description"],
                    "properties": {
                        "error": {"type": "string"},
                        "error_description": {"type": "string"},
                        "max_ongoing": {"type": "integer"},
                        "ongoing": {"type": "integer"},
                        "state": {
                            "type": "string",
                            "description": "`invalid_transition`, `lease_lost`: the call's "
                            "state now.",
                        },
                        "requested": {
                            "type": "string",
                            "description": "`invalid_transition`: the state asked for.",
                        },
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"type": "string"},
                        "database": {"type": "string"},
                        "keys": {"type": "string"},
                        "revocations": {
                            "type": "object",
                            "description": "/readyz: this worker's copy of the auth server's "
                            "revocation feed: status (ok, stale, starting or disabled), "
                            "seconds_since_update, cursor, entries, last_error.",
                        },
                    },
                },
            },
        },
    }
