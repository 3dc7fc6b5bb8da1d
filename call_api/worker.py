"""The webhook worker: ``call-api worker`` runs ``Worker.run`` until SIGTERM or SIGINT.

Each round claims a batch of due events (``webhooks.claim``: at most one per call, so
per-call order holds), POSTs them concurrently on a thread pool (the threads do HTTP only;
every database step runs on the worker's own thread, in its app context), records the
outcomes, and goes straight on to the next round while there is work; idle, it sleeps
``CALL_WEBHOOK_POLL_INTERVAL``. A stop signal lets the current batch finish and record.

Any number of workers may run (on PostgreSQL; on SQLite they take turns), each named by
``--id`` (default ``hostname:pid``). A worker that dies mid-batch loses nothing: its events'
leases expire after ``CALL_WEBHOOK_LEASE_SECONDS`` and another worker (or its restart)
sends them again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import FrameType
from typing import Any

from flask import Flask

from . import webhooks
from .extensions import db

log = logging.getLogger("clickcall.worker")

MAX_WORKER_ID = 48
ERROR_PAUSE_MAX = 30.0  # seconds: the longest wait between rounds while the database fails


def default_worker_id() -> str:
    return f"{socket.gethostname()[: MAX_WORKER_ID - 8]}:{os.getpid()}"


def check_worker_id(value: str) -> str:
    if not 1 <= len(value) <= MAX_WORKER_ID or any(not 0x21 <= ord(c) <= 0x7E for c in value):
        raise ValueError(f"the worker id must be 1–{MAX_WORKER_ID} visible ASCII characters")
    return value


class Worker:
    """Delivers the outbox of ``app``'s database. Call its methods inside the app context."""

    def __init__(self, app: Flask, worker_id: str | None = None) -> None:
        self.app = app
        self.worker_id = check_worker_id(worker_id or default_worker_id())
        self.settings = webhooks.Settings.from_config(app.config)
        self.stop = threading.Event()
        self.delivered = 0
        self.failed_attempts = 0
        self._pool = ThreadPoolExecutor(
            max_workers=self.settings.batch, thread_name_prefix="webhook"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def run_round(self) -> int:
        """Claim one batch, deliver it, record it; the number of events attempted."""
        claims = webhooks.claim(self.worker_id, self.settings)
        if not claims:
            return 0
        config = dict(self.app.config)
        outcomes = list(
            self._pool.map(lambda c: webhooks.deliver(c, config, self.settings), claims)
        )
        for item, outcome in zip(claims, outcomes, strict=True):
            applied = webhooks.record(item, outcome, self.worker_id, self.settings)
            if outcome.delivered:
                self.delivered += 1
            else:
                self.failed_attempts += 1
            log.info(
                "webhook attempt",
                extra={
                    "fields": {
                        "event": "webhook_attempt",
                        "worker": self.worker_id,
                        "webhook_id": item.event_id,
                        "status_code": outcome.status_code,
                        "error": outcome.error,
                        "duration_ms": outcome.duration_ms,
                        "lease_held": applied,
                    }
                },
            )
        return len(claims)

    def run_once(self) -> int:
        """Deliver what is due now, round after round, until a round finds nothing (``--once``).
        Returns the number of attempts made."""
        total = 0
        while not self.stop.is_set():
            count = self.run_round()
            if not count:
                break
            total += count
        return total

    def run(self) -> None:
        """Rounds until ``stop`` is set: straight on while there is work, else a sleep of
        the poll interval. A database error is logged and retried after a growing pause,
        so an outage stops deliveries, not the worker."""
        pause = self.settings.poll_interval
        while not self.stop.is_set():
            try:
                busy = self.run_round()
                pause = self.settings.poll_interval
            except Exception:
                log.exception("webhook worker round failed; retrying")
                db.session.remove()
                busy = 0
                pause = min(ERROR_PAUSE_MAX, pause * 2)
                self.stop.wait(pause)
                continue
            if not busy:
                self.stop.wait(self.settings.poll_interval)

    @contextmanager
    def stopping_on_signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT set ``stop``: the batch in hand finishes and is recorded."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("webhook worker stopping", extra={"fields": {"signal": signum}})
            self.stop.set()

        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may set handlers (a worker run by a test's thread)
            return
        previous: dict[signal.Signals, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def run_worker(app: Flask, worker_id: str | None = None, once: bool = False) -> dict[str, Any]:
    """What ``call-api worker`` does (in ``app``'s context): a summary when it ends."""
    worker = Worker(app, worker_id)
    started = time.monotonic()
    log.info(
        "webhook worker started",
        extra={"fields": {"event": "worker_started", "worker": worker.worker_id, "once": once}},
    )
    try:
        with worker.stopping_on_signals():
            if once:
                worker.run_once()
            else:
                worker.run()
    finally:
        worker.close()
        db.session.remove()
    return {
        "worker": worker.worker_id,
        "delivered": worker.delivered,
        "failed_attempts": worker.failed_attempts,
        "seconds": round(time.monotonic() - started, 3),
    }
