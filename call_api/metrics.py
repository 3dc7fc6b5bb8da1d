"""The call API's Prometheus series (served at its own ``/metrics``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from shared.metrics import ServiceMetrics

METRICS = ServiceMetrics("call_api")
CALLS_STARTED = METRICS.counter("clickcall_calls_started_total", "Call sessions started.")
CALL_TRANSITIONS = METRICS.counter(
    "clickcall_call_transitions_total",
    "Call state changes (each with its event in the outbox), by new state and source.",
    ["state", "source"],
)
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


def lifecycle_series() -> Iterable[Metric]:
    """Live calls by state and the webhook backlog, read from the database at each scrape:
    alert on a growing ``clickcall_webhook_oldest_pending_seconds`` (no worker running, or a
    receiver down) and on ``failed`` events."""
    from sqlalchemy import func, select

    from .extensions import db
    from .lifecycle import LIVE_STATES
    from .models import Call, CallEvent

    try:
        live = dict(
            db.session.execute(
                select(Call.state, func.count())
                .where(Call.status == "ongoing")
                .group_by(Call.state)
            ).all()
        )
        deliveries = dict(
            db.session.execute(
                select(CallEvent.delivery, func.count())
                .where(CallEvent.delivery.in_(("pending", "failed")))
                .group_by(CallEvent.delivery)
            ).all()
        )
        oldest = db.session.scalar(
            select(func.min(CallEvent.created_at)).where(CallEvent.delivery == "pending")
        )
    finally:
        db.session.remove()
    calls = GaugeMetricFamily(
        "clickcall_calls_live", "Calls not yet ended, by state.", labels=["state"]
    )
    for state in LIVE_STATES:
        calls.add_metric([state], live.get(state, 0))
    events = GaugeMetricFamily(
        "clickcall_webhook_events",
        "Webhook events waiting for delivery (pending) or given up (failed).",
        labels=["delivery"],
    )
    for delivery in ("pending", "failed"):
        events.add_metric([delivery], deliveries.get(delivery, 0))
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
    lag = GaugeMetricFamily(
        "clickcall_webhook_oldest_pending_seconds",
        "Age of the oldest webhook event not yet delivered (0: none pending).",
        value=max(0.0, age),
    )
    return [calls, events, lag]


METRICS.live(lifecycle_series)
