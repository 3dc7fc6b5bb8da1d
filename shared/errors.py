"""One exception hierarchy for both services.

Every error a client can cause (or that the platform raises, like a database outage) is a
``ClickCallError`` carrying its HTTP status, an ``error`` code and a human description.
The names of the 2012 original are kept where they fit (``ObjectDoesNotExist``,
``RestMaxCallError``, ``DBConnectionError``). OAuth protocol errors (``access_denied``,
``invalid_grant``, …) are Authlib's, worded in ``auth_server.oauth_errors``.
"""

from __future__ import annotations

from typing import Any


class ClickCallError(Exception):
    """Base class: ``status`` + ``error`` + ``description`` (+ extra body fields, headers)."""

    status: int = 400
    error: str = "invalid_request"
    description: str = "The request is invalid."

    def __init__(
        self,
        description: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.description = description or self.description
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(self.description)

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description, **self.extra}


class InvalidRequest(ClickCallError):
    status = 400
    error = "invalid_request"


class InvalidNumber(InvalidRequest):
    error = "invalid_number"
    description = "The number is not a valid phone number."


class InvalidCredentials(ClickCallError):
    status = 401
    error = "invalid_credentials"
    description = "Invalid username or password."


class InvalidToken(ClickCallError):
    """The bearer token is missing a part, expired, forged or otherwise unusable."""

    status = 401
    error = "invalid_token"
    description = "The access token is invalid."


class MissingToken(ClickCallError):
    """No bearer token at all: RFC 6750 §3.1 says answer without an error code."""

    status = 401
    error = "invalid_request"
    description = "An access token is required."


class InsufficientScope(ClickCallError):
    status = 403
    error = "insufficient_scope"
    description = "The access token does not carry the scope this endpoint needs."


class CSRFError(ClickCallError):
    status = 400
    error = "invalid_request"
    description = "The form is stale or was not sent by this site (CSRF check failed); reload it."


class ObjectDoesNotExist(ClickCallError):
    status = 404
    error = "not_found"
    description = "No such object."


class MethodNotAllowed(ClickCallError):
    status = 405
    error = "method_not_allowed"
    description = "This method is not allowed on this URL."


class NotAcceptable(ClickCallError):
    status = 406
    error = "not_acceptable"
    description = "Only application/json and application/xml are offered."


class RestMaxCallError(ClickCallError):
    """The user already has as many ongoing calls as their limit allows."""

    status = 409
    error = "max_calls_exceeded"
    description = "The maximum number of ongoing calls is reached."


class Conflict(ClickCallError):
    status = 409
    error = "conflict"


class InvalidTransition(Conflict):
    """The call's state machine does not allow this step (``lifecycle.TRANSITIONS``)."""

    error = "invalid_transition"
    description = "The call cannot make this transition."


class LeaseLost(Conflict):
    """A dialer reported on a call it no longer holds (its lease expired or was released)."""

    error = "lease_lost"
    description = "This dialer does not hold the call's lease."


class PayloadTooLarge(ClickCallError):
    status = 413
    error = "payload_too_large"
    description = "The request body is too large."


class UnsupportedMediaType(ClickCallError):
    status = 415
    error = "unsupported_media_type"
    description = "Send application/x-www-form-urlencoded or application/json."


class IdempotencyKeyReused(ClickCallError):
    status = 422
    error = "idempotency_key_reused"
    description = "This Idempotency-Key was already used with a different request body."


class TooManyRequests(ClickCallError):
    status = 429
    error = "too_many_requests"
    description = "Too many requests; retry later."


class ServiceUnavailable(ClickCallError):
    status = 503
    error = "service_unavailable"
    description = "The service is unavailable; retry shortly."


class DBConnectionError(ServiceUnavailable):
    """The database is unreachable or timed out: a 503, never a stack trace."""

    description = "The database is unavailable; retry shortly."


class ServerError(ClickCallError):
    status = 500
    error = "server_error"
    description = "An unexpected error occurred."
