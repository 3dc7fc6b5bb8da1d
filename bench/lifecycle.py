"""Pieces of the ``lifecycle`` scenario of `make bench` (``bench/run.py`` runs it).

- ``Receiver``: the apps' webhook endpoint, a ThreadingHTTPServer on 127.0.0.1 that verifies
  every POST with ``standardwebhooks`` and notes when it arrived;
- ``Openers``: closed-loop callers, one thread per user: open a call to the simulator's
  answering number, wait for its ``call.completed`` webhook, open the next;
- ``percentiles`` and ``check_events``: the numbers and the correctness check (every event
  of every call arrived once, verified, in order).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

ANSWERS = "+15005550006"  # the simulator rings, answers, talks, hangs up: completed
TYPES = ["call.queued", "call.ringing", "call.in-progress", "call.completed"]


@dataclass
class Received:
    webhook_id: str
    type: str
    token_call: str
    event_at: float  # the event's ``timestamp`` (the transition), epoch seconds
    received_at: float  # epoch seconds, when the request arrived

    @property
    def latency_ms(self) -> float:
        return (self.received_at - self.event_at) * 1000


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a worker's batch arrives at once


class Receiver:
    """Verifies and records every webhook; wakes the opener waiting for a call's end."""

    def __init__(self) -> None:
        self.secret = ""
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.unverified = 0
        self._ended: dict[str, threading.Event] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                receiver.handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks"

    def ended(self, token_call: str) -> threading.Event:
        with self.lock:
            return self._ended.setdefault(token_call, threading.Event())

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        from standardwebhooks.webhooks import Webhook

        arrived = time.time()
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            event = Webhook(self.secret).verify(body, headers)
        except Exception:
            with self.lock:
                self.unverified += 1
            status = 401
        else:
            item = Received(
                headers["webhook-id"],
                str(event["type"]),
                str(event["data"]["token_call"]),
                epoch(str(event["timestamp"])),
                arrived,
            )
            with self.lock:
                self.received.append(item)
            if item.type == "call.completed":
                self.ended(item.token_call).set()
            status = 204
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Opened:
    token_call: str
    posted_at: float  # epoch seconds
    post_ms: float


@dataclass
class Openers:
    """``users`` (subject, access token) each keep one call going until ``seconds`` pass."""

    api_url: str
    users: list[tuple[str, str]]
    receiver: Receiver
    seconds: float
    opened: list[Opened] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, token: str, deadline: float) -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                started = time.time()
                t0 = time.perf_counter()
                try:
                    r = session.post(
                        f"{self.api_url}/rest/call",
                        data={"number": ANSWERS},
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=30,
                    )
                except requests.RequestException as exc:
                    with self.lock:
                        self.failures.append(type(exc).__name__)
                    time.sleep(0.1)
                    continue
                post_ms = (time.perf_counter() - t0) * 1000
                if r.status_code != 201:
                    with self.lock:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                    time.sleep(0.1)
                    continue
                token_call = r.json()["token_call"]
                with self.lock:
                    self.opened.append(Opened(token_call, started, post_ms))
                # The app learns that its call ended from the webhook, then calls again.
                if not self.receiver.ended(token_call).wait(60):
                    with self.lock:
                        self.failures.append(f"no call.completed for {token_call} in 60s")

    def run(self) -> tuple[float, float]:
        """Run every user's loop; (start, end) of the window in epoch seconds."""
        start = time.time()
        deadline = time.monotonic() + self.seconds
        threads = [
            threading.Thread(target=self._run, args=(token, deadline), daemon=True)
            for _subject, token in self.users
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.seconds + 120)
        return start, start + self.seconds


def percentiles(values: Iterable[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "max": None}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 1)}


def check_events(received: list[Received], calls: Iterable[str]) -> dict[str, Any]:
    """Every call's four events arrived, each once, in order."""
    by_call: dict[str, list[Received]] = {}
    for item in received:
        by_call.setdefault(item.token_call, []).append(item)
    wanted = list(calls)
    missing = [t for t in wanted if [r.type for r in by_call.get(t, [])] != TYPES]
    ids = [r.webhook_id for t in wanted for r in by_call.get(t, [])]
    duplicates = len(ids) - len(set(ids))
    return {
        "calls": len(wanted),
        "calls_incomplete_or_out_of_order": len(missing),
        "duplicates": duplicates,
        "ok": not missing and not duplicates,
    }
