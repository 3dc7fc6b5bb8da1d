"""Prometheus metrics (prometheus-client), served at ``/metrics`` by both services.

Under gunicorn with several workers set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder
(``deploy/gunicorn.conf.py`` does) so every worker's counts are aggregated.
"""

from __future__ import annotations

import os

from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "clickcall_http_requests_total",
    "HTTP requests by service, endpoint, method and status.",
    ["service", "endpoint", "method", "status"],
)
LATENCY = Histogram(
    "clickcall_http_request_duration_seconds",
    "HTTP request latency by service and endpoint.",
    ["service", "endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
TOKENS_ISSUED = Counter(
    "clickcall_tokens_issued_total", "Access tokens issued by grant type.", ["grant_type"]
)
CALLS_STARTED = Counter("clickcall_calls_started_total", "Call sessions started.")
CALLS_ENDED = Counter("clickcall_calls_ended_total", "Call sessions ended, by reason.", ["reason"])
LIMIT_REFUSALS = Counter(
    "clickcall_call_limit_refusals_total", "Call starts refused by the ongoing-call limit."
)
JWKS_REFRESHES = Counter(
    "clickcall_jwks_refreshes_total", "JWKS fetches by the call API, by outcome.", ["outcome"]
)


def observe(service: str, endpoint: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(service, endpoint, method, str(status)).inc()
    LATENCY.labels(service, endpoint).observe(seconds)


def install_metrics_endpoint(app: Flask) -> None:
    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus exposition format."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            data = generate_latest(registry)
        else:
            data = generate_latest()
        return Response(data, mimetype=CONTENT_TYPE_LATEST)


def endpoint_label() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"
