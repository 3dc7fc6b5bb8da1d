"""Helpers for the call-lifecycle fault tests: a real webhook receiver, a dialer over HTTP,
the worker and simulator processes, and the checks every lifecycle fault shares.

- ``Receiver``: a ThreadingHTTPServer on 127.0.0.1 that verifies every POST with
  ``standardwebhooks`` (``Webhook(secret).verify``) and records it with its headers, when it
  arrived and when it was answered. It can be *down* (its port closed: connection refused),
  *failing* (it answers 503) or *hold* the first request open (the worker is mid-POST).
- ``HttpDialer``: the dialer interface spoken by the test itself (``POST /dialer/poll``,
  ``POST /dialer/calls/<token_call>/events``).
- ``start_worker`` / ``start_simulator`` / ``start_doomed_dialer``: ``call-api worker``,
  ``call-api simulator`` and ``python -m tests.faults.lifecycle hold-claims`` (a dialer that
  claims calls, moves some on, then only renews its leases until it is killed).
- ``check_deliveries``: every event of every call (as ``GET /admin/calls/<t>/events`` lists
  them) arrived, verified, in order per call.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]

ANSWERS = "+15005550006"  # the simulator rings, answers, talks, hangs up: completed
BUSY = "+15005550007"  # rings briefly, then busy
FAILS = "+15005550009"  # fails at once
EXPECTED_TYPES = {
    ANSWERS: ["call.queued", "call.ringing", "call.in-progress", "call.completed"],
    BUSY: ["call.queued", "call.ringing", "call.busy"],
    FAILS: ["call.queued", "call.failed"],
}
HOLD_MAX = 30.0  # seconds a held request is kept open at most


def wait_for(what: str, check: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    """``check()``'s first truthy value, polled until ``timeout`` (a deadline wait)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s (last: {value!r})")
        time.sleep(step)


# --- the receiver ------------------------------------------------------------------------


@dataclass
class Delivery:
    """One POST the receiver got."""

    webhook_id: str
    body: bytes
    headers: dict[str, str]  # names lower-cased
    event: dict[str, Any] | None  # the verified payload; None: the signature did not verify
    error: str | None
    status: int  # what the receiver answered (or meant to: a held request's sender may be gone)
    arrived: float  # time.monotonic()
    arrived_wall: float  # time.time()
    answered: float = 0.0  # time.monotonic() when the answer was sent (or failed to be)
    held: bool = False

    @property
    def verified(self) -> bool:
        return self.event is not None

    @property
    def ok(self) -> bool:
        return self.verified and 200 <= self.status < 300

    @property
    def token_call(self) -> str:
        assert self.event is not None
        return str(self.event["data"]["token_call"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: two workers' batches (20 POSTs each, at once)
    # would overflow it and see connections reset.
    request_queue_size = 128


class Receiver:
    """A real webhook receiver on a fixed 127.0.0.1 port (see the module docstring)."""

    def __init__(self, name: str = "hooks") -> None:
        self.name = name
        self.secret: str | None = None
        self.deliveries: list[Delivery] = []
        self.aborted: list[str] = []  # webhook-ids of requests cut short by their sender
        self.lock = threading.Lock()
        self.status: int | None = None  # None: 204 if verified, else 401
        self.hold_first = False
        self.held = threading.Event()  # set when the held request has arrived
        self.release = threading.Event()
        self._held_one = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.name}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                receiver.handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler

    def up(self) -> None:
        """Listen (again, on the same port)."""
        assert self._server is None
        server = _Server(("127.0.0.1", self.port), self._handler())
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def down(self) -> None:
        """Close the port: connections are refused until ``up()``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def close(self) -> None:
        self.release.set()
        self.down()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        from standardwebhooks.webhooks import Webhook

        arrived, arrived_wall = time.monotonic(), time.time()
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if len(body) < length:
            # The sender died mid-request (a killed worker): an aborted request, which no
            # HTTP server hands to its application. Noted, not a delivery.
            with self.lock:
                self.aborted.append(headers.get("webhook-id", ""))
            return
        event: dict[str, Any] | None = None
        error = None
        try:
            assert self.secret is not None, "the receiver has no secret yet"
            event = dict(Webhook(self.secret).verify(body, headers))
        except Exception as exc:  # a bad signature is recorded (and answered 401)
            error = f"{type(exc).__name__}: {exc}"
        with self.lock:
            status = self.status or (204 if event is not None else 401)
            hold = self.hold_first and not self._held_one
            self._held_one = self._held_one or hold
            item = Delivery(
                headers.get("webhook-id", ""),
                body,
                headers,
                event,
                error,
                status,
                arrived,
                arrived_wall,
                held=hold,
            )
            self.deliveries.append(item)
        if hold:
            self.held.set()
            self.release.wait(HOLD_MAX)
        try:
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
        except OSError:
            pass  # the sender is gone (killed mid-delivery)
        item.answered = time.monotonic()

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    def held_delivery(self) -> Delivery:
        return next(d for d in self.snapshot() if d.held)


@contextmanager
def receivers(*names: str) -> Iterator[list[Receiver]]:
    made = [Receiver(name) for name in names]
    try:
        yield made
    finally:
        for r in made:
            r.close()


# --- the call API over HTTP ----------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """A call API seen by its users and an admin, over HTTP."""

    def __init__(self, url: str, admin_token: str) -> None:
        self.url = url
        self.admin = bearer(admin_token)
        self.session = requests.Session()

    def set_webhook(self, client_id: str, url: str) -> str:
        """Register ``url`` for the client with a fresh secret (returned)."""
        r = self.session.put(
            f"{self.url}/admin/clients/{client_id}/webhook",
            json={"url": url, "rotate_secret": True},
            headers=self.admin,
            timeout=10,
        )
        assert r.status_code in (200, 201), r.text
        body = r.json()
        assert body["url"] == url and body["secret"].startswith("whsec_"), body
        return str(body["secret"])

    def open_call(self, user_token: str, number: str, **options: Any) -> str:
        r = self.session.post(
            f"{self.url}/rest/call",
            json={"number": number, **options},
            headers=bearer(user_token),
            timeout=10,
        )
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "queued", r.text
        return str(r.json()["token_call"])

    def call(self, token_call: str) -> dict[str, Any]:
        r = self.session.get(f"{self.url}/admin/calls/{token_call}", headers=self.admin, timeout=10)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def events(self, token_call: str) -> list[dict[str, Any]]:
        r = self.session.get(
            f"{self.url}/admin/calls/{token_call}/events", headers=self.admin, timeout=10
        )
        assert r.status_code == 200, r.text
        assert r.json()["token_call"] == token_call
        return list(r.json()["events"])

    def close(self) -> None:
        self.session.close()


class HttpDialer:
    """The dialer interface spoken by the test (or by ``hold-claims``)."""

    def __init__(self, api_url: str, token: str, dialer_id: str) -> None:
        self.url = api_url
        self.headers = bearer(token)
        self.dialer_id = dialer_id
        self.session = requests.Session()

    def poll(self, max_calls: int = 1, wait: float = 0) -> dict[str, Any]:
        r = self.session.post(
            f"{self.url}/dialer/poll",
            json={"dialer_id": self.dialer_id, "max_calls": max_calls, "wait": wait},
            headers=self.headers,
            timeout=wait + 15,
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def claim(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        claimed: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(claimed) < count:
            assert time.monotonic() < deadline, f"claimed {len(claimed)} of {count}"
            claimed += self.poll(count - len(claimed), wait=0.5)["calls"]
        return claimed

    def event(self, token_call: str, name: str) -> dict[str, Any]:
        r = self.session.post(
            f"{self.url}/dialer/calls/{token_call}/events",
            json={"dialer_id": self.dialer_id, "event": name},
            headers=self.headers,
            timeout=15,
        )
        assert r.status_code == 200, r.text
        assert r.headers["Dialer-Event-Applied"] == "true", r.text
        return dict(r.json())

    def close(self) -> None:
        self.session.close()


# --- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """``kill -9``."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not end within 15 s; its exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


@dataclass
class Procs:
    """The processes a test started; all stopped (by their own pid) when it ends."""

    started: list[Proc] = field(default_factory=list)
    # Seconds a dialer's last long poll may outlive it in the call API (and claim calls for
    # it: the call APIs are shared by the tests, so the next test would find them taken).
    linger: float = 0.0
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lifecycle-")))

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        log_path = self.folder / f"{name}.log"
        var_dir = self.folder / f"{name}-var"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, *args],
                env={**os.environ, "CLICKCALL_VAR_DIR": str(var_dir), **env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(name, process, log_path)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.process.poll() is None:
                proc.process.terminate()
        for proc in self.started:
            proc.stop()
        time.sleep(self.linger)
        shutil.rmtree(self.folder, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in self.started)


@contextmanager
def processes() -> Iterator[Procs]:
    procs = Procs()
    try:
        yield procs
    except BaseException:
        print(procs.logs(), file=sys.stderr)  # shown with the failure
        raise
    finally:
        procs.stop_all()


def start_worker(procs: Procs, env: dict[str, str], worker_id: str) -> Proc:
    return procs.start(worker_id, ["-m", "call_api.cli", "worker", "--id", worker_id], env)


def start_simulator(
    procs: Procs, env: dict[str, str], dialer_id: str, max_calls: int = 20, wait: float = 1
) -> Proc:
    args = ["-m", "call_api.cli", "simulator", "--id", dialer_id, "--wait", str(wait)]
    procs.linger = max(procs.linger, wait + 0.2)
    return procs.start(dialer_id, [*args, "--max-calls", str(max_calls)], env)


def start_doomed_dialer(
    procs: Procs,
    api_url: str,
    token: str,
    dialer_id: str,
    queued: int,
    ringing: int,
    answered: int,
) -> Proc:
    args = ["-m", "tests.faults.lifecycle", "hold-claims", "--api", api_url]
    args += ["--id", dialer_id, "--queued", str(queued), "--ringing", str(ringing)]
    return procs.start(dialer_id, [*args, "--answered", str(answered)], {"DIALER_TOKEN": token})


def doomed_ready(proc: Proc, timeout: float = 20) -> dict[str, list[str]]:
    """The ``{"queued", "ringing", "in-progress"}`` token_calls ``hold-claims`` printed."""

    def line() -> dict[str, list[str]] | None:
        assert proc.process.poll() is None, proc.log()
        for text in proc.log().splitlines():
            if text.startswith("{"):
                return dict(json.loads(text))
        return None

    return dict(wait_for(f"{proc.name} holds its claims", line, timeout))


# --- checks ------------------------------------------------------------------------------------


def check_deliveries(
    deliveries: Iterable[Delivery],
    events_by_call: dict[str, list[dict[str, Any]]],
    exactly_once: bool,
) -> dict[str, int]:
    """Every event of every call arrived, verified, in order per call; a repeat only with
    the same webhook-id and body; no two deliveries of one webhook-id at the same time.

    ``exactly_once``: no repeats at all. Returns counts for the report."""
    all_deliveries = list(deliveries)
    bad = [d for d in all_deliveries if not d.verified]
    assert not bad, [(d.webhook_id, d.error) for d in bad]
    expected_ids = {e["event_id"]: e for events in events_by_call.values() for e in events}
    accepted = [d for d in all_deliveries if d.ok]
    unknown = {d.webhook_id for d in all_deliveries} - set(expected_ids)
    assert not unknown, f"deliveries of events no call has: {unknown}"
    for d in all_deliveries:
        event = expected_ids[d.webhook_id]
        # The body is the event's payload exactly, whichever attempt carried it.
        assert d.event == event["payload"], (d.webhook_id, d.event, event["payload"])
        assert d.event is not None and d.event["type"] == event["type"]
    by_id: dict[str, list[Delivery]] = {}
    for d in all_deliveries:
        by_id.setdefault(d.webhook_id, []).append(d)
    for webhook_id, copies in by_id.items():
        assert len({c.body for c in copies}) == 1, f"{webhook_id}: different bodies"
        ordered = sorted(copies, key=lambda c: c.arrived)
        for first, second in zip(ordered, ordered[1:], strict=False):
            assert first.answered and first.answered <= second.arrived, (
                f"{webhook_id} was being delivered twice at the same time"
            )
    for token_call, events in events_by_call.items():
        ids = [e["event_id"] for e in events]
        got = [d.webhook_id for d in accepted if d.token_call == token_call]
        firsts = list(dict.fromkeys(got))
        assert firsts == ids, f"call {token_call}: events arrived as {got}, expected {ids}"
        if exactly_once:
            assert got == ids, f"call {token_call}: repeated deliveries {got}"
        # In order: no event arrives before every earlier event of its call has.
        seen: set[str] = set()
        for d in (d for d in all_deliveries if d.token_call == token_call):
            position = ids.index(d.webhook_id)
            assert set(ids[:position]) <= seen, f"call {token_call}: {d.webhook_id} too early"
            if d.ok:
                seen.add(d.webhook_id)
    return {
        "events": len(expected_ids),
        "posts": len(all_deliveries),
        "accepted": len(accepted),
        "repeats": len(accepted) - len({d.webhook_id for d in accepted}),
    }


# --- hold-claims: the dialer that dies holding its claims ----------------------------------


def hold_claims(argv: list[str] | None = None) -> None:
    """Claim ``queued + ringing + answered`` calls, report ``ringing`` on the second group
    and ``ringing`` + ``answered`` on the third, print which is which as one JSON line,
    then only renew the leases (a poll with ``max_calls: 0`` every 0.3 s) until killed."""
    p = argparse.ArgumentParser(prog="hold-claims")
    p.add_argument("--api", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--queued", type=int, required=True)
    p.add_argument("--ringing", type=int, required=True)
    p.add_argument("--answered", type=int, required=True)
    a = p.parse_args(argv)
    dialer = HttpDialer(a.api, os.environ["DIALER_TOKEN"], a.id)
    calls = [c["token_call"] for c in dialer.claim(a.queued + a.ringing + a.answered)]
    queued = calls[: a.queued]
    ringing = calls[a.queued : a.queued + a.ringing]
    answered = calls[a.queued + a.ringing :]
    for token_call in ringing + answered:
        dialer.event(token_call, "ringing")
    for token_call in answered:
        dialer.event(token_call, "answered")
    print(json.dumps({"queued": queued, "ringing": ringing, "in-progress": answered}), flush=True)
    while True:
        dialer.poll(0)
        time.sleep(0.3)


if __name__ == "__main__":
    if sys.argv[1:2] == ["hold-claims"]:
        hold_claims(sys.argv[2:])
    else:
        sys.exit("usage: python -m tests.faults.lifecycle hold-claims --api URL --id ID …")
