"""The call API's Prometheus series (served at its own ``/metrics``)."""

from __future__ import annotations

from shared.metrics import ServiceMetrics

METRICS = ServiceMetrics("call_api")
CALLS_STARTED = METRICS.counter("clickcall_calls_started_total", "Call sessions started.")
CALLS_ENDED = METRICS.counter(
    "clickcall_calls_ended_total", "Call sessions ended, by reason.", ["reason"]
)
LIMIT_REFUSALS = METRICS.counter(
    "clickcall_call_limit_refusals_total", "Call starts refused by the ongoing-call limit."
)
JWKS_REFRESHES = METRICS.counter(
    "clickcall_jwks_refreshes_total", "JWKS fetches by the call API, by outcome.", ["outcome"]
)
REVOCATION_POLLS = METRICS.counter(
    "clickcall_revocation_feed_polls_total",
    "Polls of the auth server's revocation feed by the call API, by outcome.",
    ["outcome"],
)
REVOKED_TOKENS_REFUSED = METRICS.counter(
    "clickcall_revoked_tokens_refused_total",
    "Requests refused because the auth server revoked their access token.",
)
