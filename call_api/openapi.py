"""The OpenAPI 3.1 description of the call API (served at ``/openapi.json``).

Kept beside the code and checked against it by ``tests/call_api/test_openapi.py``
(openapi-spec-validator, and schemathesis driving the live app).
"""

from __future__ import annotations

from typing import Any

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


def _errors(*codes: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        out[code] = {"description": ERRORS[code], "content": _content(_ref("Error"))}
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


def spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ClickCall call API",
            "version": "1.0.0",
            "description": (
                "Open, end, read and list call sessions for the user who authorized an app. "
                "A user never has more ongoing calls than their limit, across all apps. "
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
                                "enum": ["ongoing", "ended", "all"],
                                "default": "all",
                            },
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
                        }
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
                    ],
                    "properties": {
                        "token_call": {"type": "string"},
                        "number": {"type": "string", "pattern": "^\\+[1-9][0-9]{1,14}$"},
                        "status": {"type": "string", "enum": ["ongoing", "ended"]},
                        "started_at": {"type": "string", "format": "date-time"},
                        "ended_at": {"type": ["string", "null"], "format": "date-time"},
                        "duration": {"type": ["integer", "null"], "minimum": 0},
                        "end_reason": {"enum": ["hangup", "admin", "expired", None]},
                        "client_id": {"type": "string"},
                        "subject": {"type": "string"},
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
                        "status": {"type": "string", "enum": ["ongoing", "ended", "all"]},
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
