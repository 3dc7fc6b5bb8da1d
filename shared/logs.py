"""One JSON log line per request, with a request id, and never a secret.

The line carries the method, the path *without* its query string (the original allows
``?access_token=…``, and codes travel in redirects), the status, the duration, the client
id / subject when known, and the request id (``X-Request-ID`` passed through when it looks
sane, generated otherwise, and echoed in the response).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request

from .metrics import endpoint_label, observe

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECRET_PARAMS = re.compile(
    r"((?:access_token|refresh_token|code|code_verifier|client_secret|password|token|state)=)[^&\s\"]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Mask values of secret-bearing parameters in a URL or message."""
    return SECRET_PARAMS.sub(r"\1[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        else:
            payload["message"] = redact(record.getMessage())
        if record.exc_info and record.levelno >= logging.ERROR:
            payload["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the ``clickcall`` loggers (idempotent)."""
    logger = logging.getLogger("clickcall")
    if not any(getattr(h, "_clickcall", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._clickcall = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def install_request_logging(app: Flask, service: str) -> None:
    access = logging.getLogger(f"clickcall.{service}.access")

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _log(response: Response) -> Response:
        request_id = getattr(g, "request_id", None) or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        started = getattr(g, "started", None)
        fields: dict[str, Any] = {
            "event": "request",
            "service": service,
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
            "remote_addr": request.remote_addr,
        }
        claims = getattr(g, "claims", None)
        if isinstance(claims, dict):
            fields["client_id"] = claims.get("client_id")
            fields["subject"] = claims.get("sub")
        access.info("request", extra={"fields": fields})
        if started:
            observe(
                endpoint_label(),
                request.method,
                response.status_code,
                time.perf_counter() - started,
            )
        return response
