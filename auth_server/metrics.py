"""The auth server's Prometheus series (served at its own ``/metrics``)."""

from __future__ import annotations

from shared.metrics import ServiceMetrics

METRICS = ServiceMetrics("auth_server")
TOKENS_ISSUED = METRICS.counter(
    "clickcall_tokens_issued_total", "Access tokens issued by grant type.", ["grant_type"]
)
