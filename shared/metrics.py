"""Prometheus metrics (prometheus-client), served at ``/metrics`` by both services.

Each service owns a :class:`ServiceMetrics`: its own registry holding the request series
every service has, the process series, and the service's own counters. ``/metrics``
exposes only that registry, so when both services share one process (``make run``) each
still shows only its own series.

``METRICS_TOKEN`` (both services) makes ``/metrics`` a bearer-token endpoint for the
scraper; unset, it is open to whoever reaches the port.

Under gunicorn with several workers set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder
(``deploy/gunicorn.conf.py`` does) so every worker's counts are aggregated; the folder's
series are filtered to the service's own names and ``service`` label too.

A service may also add *live* series (``ServiceMetrics.live``): computed at each scrape,
typically from its database (the call API's webhook backlog), so they are the same whichever
worker answers and need no multi-process bookkeeping.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Iterable, Sequence

from flask import Flask, Response, current_app, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .errors import ClickCallError, InvalidToken, MissingToken

EXTENSION = "clickcall_metrics"
METRICS_REALM = "metrics"

log = logging.getLogger("clickcall")


class ServiceMetrics:
    """One service's registry and the series every service has."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._names: set[str] = set()
        self._live: list[Callable[[], Iterable[Metric]]] = []
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.requests = self.counter(
            "clickcall_http_requests_total",
            "HTTP requests by service, endpoint, method and status.",
            ["service", "endpoint", "method", "status"],
        )
        self._names.add("clickcall_http_request_duration_seconds")
        self.latency = Histogram(
            "clickcall_http_request_duration_seconds",
            "HTTP request latency by service and endpoint.",
            ["service", "endpoint"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter in this service's registry."""
        self._names.add(name.removesuffix("_total"))
        return Counter(name, documentation, labels, registry=self.registry)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(self.service, endpoint, method, str(status)).inc()
        self.latency.labels(self.service, endpoint).observe(seconds)

    def live(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Add series computed at each scrape by ``collect`` (called in the app context)."""
        self._live.append(collect)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            registry.register(_OwnSeries(self, multiprocess.MultiProcessCollector(None)))  # type: ignore[no-untyped-call]
            text = generate_latest(registry)
        else:
            text = generate_latest(self.registry)
        if self._live:
            live = CollectorRegistry(auto_describe=False)
            live.register(_Live(self._live))
            text += generate_latest(live)
        return text


class _Live(Collector):
    """The live series; one that fails (say the database is down) is left out, logged."""

    def __init__(self, sources: list[Callable[[], Iterable[Metric]]]) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            try:
                families = list(source())
            except Exception:  # a scrape must answer even when the database does not
                log.warning("live metrics unavailable", exc_info=True)
                continue
            yield from families


class _OwnSeries(Collector):
    """The multi-process folder's series that belong to one service."""

    def __init__(self, metrics: ServiceMetrics, source: Collector) -> None:
        self.metrics = metrics
        self.source = source

    def collect(self) -> Iterable[Metric]:
        for family in self.source.collect():
            if family.name not in self.metrics._names:
                continue
            family.samples = [
                s
                for s in family.samples
                if s.labels.get("service", self.metrics.service) == self.metrics.service
            ]
            yield family


def install_metrics_endpoint(app: Flask, metrics: ServiceMetrics) -> None:
    """``GET /metrics``; with ``METRICS_TOKEN`` set, only for ``Authorization: Bearer <it>``.

    Without the setting the endpoint is open, as before: keep it off the public proxy (a
    production start says so in the log).
    """
    app.extensions[EXTENSION] = metrics
    token = str(app.config.get("METRICS_TOKEN") or "")
    if not token and app.config.get("APP_ENV") == "production":
        log.warning(
            "METRICS_TOKEN is not set: /metrics answers anyone who reaches this port; "
            "set it, or keep /metrics off the public proxy"
        )

    @app.get("/metrics")
    def metrics_view() -> Response:
        """Prometheus exposition format."""
        if token:
            refusal = _metrics_refusal(token)
            if refusal is not None:
                return refusal
        return Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)


def _metrics_refusal(token: str) -> Response | None:
    """401 unless the request carries ``Authorization: Bearer <token>`` (constant time)."""
    scheme, _, sent = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        sent.strip().encode("utf-8"), token.encode("utf-8")
    ):
        return None
    if scheme:
        error: ClickCallError = InvalidToken("The metrics token is wrong.")
        challenge = f'Bearer realm="{METRICS_REALM}", error="invalid_token"'
    else:
        error = MissingToken("The metrics need 'Authorization: Bearer <METRICS_TOKEN>'.")
        challenge = f'Bearer realm="{METRICS_REALM}"'
    response = jsonify(error.body())
    response.status_code = error.status
    response.headers["WWW-Authenticate"] = challenge
    response.headers["Cache-Control"] = "no-store"
    return response


def observe(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Count one request in the current app's series."""
    metrics: ServiceMetrics | None = current_app.extensions.get(EXTENSION)
    if metrics is not None:
        metrics.observe(endpoint, method, status, seconds)


def endpoint_label() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"
