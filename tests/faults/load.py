"""Bounded load against 127.0.0.1 and the checks every fault shares.

- ``CallLoad``: a few threads POSTing ``/rest/call`` (each POST one *logical* call with its
  own ``Idempotency-Key``), with a fixed request budget and a time limit, recording every
  outcome (status, body, or the transport error when there was no answer).
- ``settle``: after the fault, retries every call whose outcome is unknown (no 201) with the
  same key, and replays a sample of the 201s, so each logical call ends with one known
  ``token_call``.
- ``assert_no_lost_no_phantom``: the ``calls`` table holds exactly the token_calls the
  clients were given in 201s — nothing lost, nothing extra, one row per key.
- ``assert_clean_error``: a failure is a JSON error body, never a 500 or a traceback.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

NUMBER = "+14155550123"
SCALE = os.environ.get("FAULTS_SCALE", "short").lower()
FULL = SCALE == "full"

# Lines for the "fault-injection summary" printed at the end of the pytest run.
REPORT: list[str] = []


def scaled(short: Any, full: Any) -> Any:
    return full if FULL else short


def report(line: str) -> None:
    REPORT.append(line)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Outcome:
    key: str
    user: int
    started: float  # monotonic
    finished: float
    status: int | None = None  # None: no HTTP answer (connection reset, timeout)
    error: str | None = None  # transport error class, or the JSON ``error`` code
    body: str = ""
    content_type: str = ""
    token_call: str | None = None
    replayed: bool = False

    @property
    def elapsed(self) -> float:
        return self.finished - self.started


def post_call(
    session: requests.Session,
    url: str,
    token: str,
    key: str,
    user: int,
    timeout: float = 20,
) -> Outcome:
    started = time.monotonic()
    try:
        r = session.post(
            f"{url}/rest/call",
            json={"number": NUMBER},
            headers={**bearer(token), "Idempotency-Key": key},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        return Outcome(key, user, started, time.monotonic(), error=type(exc).__name__)
    out = Outcome(
        key,
        user,
        started,
        time.monotonic(),
        status=r.status_code,
        body=r.text[:2000],
        content_type=r.headers.get("Content-Type", ""),
        replayed=r.headers.get("Idempotent-Replayed") == "true",
    )
    try:
        data = r.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        if r.status_code == 201:
            out.token_call = data.get("token_call")
        else:
            out.error = data.get("error")
    r.close()
    return out


class CallLoad:
    """``threads`` clients, each POSTing in a loop until ``stop()``, the budget, or the limit.

    Users are picked round-robin from ``tokens``; ``pause`` seconds between a thread's
    requests (``backoff`` after a failure) keep the load bounded on small CI machines.
    """

    def __init__(
        self,
        url: str,
        tokens: list[str],
        threads: int = 4,
        max_requests: int = 1000,
        time_limit: float = 30,
        pause: float = 0.0,
        timeout: float = 20,
        backoff: float = 0.1,
    ) -> None:
        self.url = url
        self.backoff = backoff
        self.tokens = tokens
        self.threads = threads
        self.max_requests = max_requests
        self.time_limit = time_limit
        self.pause = pause
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._issued = 0
        self._workers: list[threading.Thread] = []
        self.started_at = 0.0

    def _next(self) -> int | None:
        with self._lock:
            if self._issued >= self.max_requests:
                return None
            self._issued += 1
            return self._issued

    def _run(self) -> None:
        deadline = self.started_at + self.time_limit
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                n = self._next()
                if n is None:
                    return
                user = n % len(self.tokens)
                out = post_call(
                    session, self.url, self.tokens[user], uuid.uuid4().hex, user, self.timeout
                )
                with self._lock:
                    self.outcomes.append(out)
                # Like a real client, back off a little after a failure.
                wait = self.pause if out.status == 201 else max(self.pause, self.backoff)
                if wait:
                    self._stop.wait(wait)

    def start(self) -> CallLoad:
        self.started_at = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for t in self._workers:
            t.join(self.timeout + 10)
            assert not t.is_alive(), "a load thread did not finish"
        return self.snapshot()

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def wait_for(self, predicate: Callable[[list[Outcome]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.05)
        return predicate(self.snapshot())


class Prober:
    """One thread repeating ``request(session)`` every ``interval`` seconds, recording each
    answer as an ``Outcome`` (``key`` is the probe's name)."""

    def __init__(
        self,
        name: str,
        request: Callable[[requests.Session], requests.Response],
        interval: float = 0.05,
    ) -> None:
        self.name = name
        self.request = request
        self.interval = interval
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{name}", daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    r = self.request(session)
                    out = Outcome(
                        self.name,
                        0,
                        started,
                        time.monotonic(),
                        status=r.status_code,
                        body=r.text[:2000],
                        content_type=r.headers.get("Content-Type", ""),
                    )
                    r.close()
                except requests.RequestException as exc:
                    out = Outcome(self.name, 0, started, time.monotonic(), error=type(exc).__name__)
                with self._lock:
                    self.outcomes.append(out)
                self._stop.wait(self.interval)

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()
        return self.snapshot()

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)


def count(outcomes: Iterable[Outcome], status: int | None) -> int:
    return sum(1 for o in outcomes if o.status == status)


def histogram(outcomes: Iterable[Outcome]) -> dict[str, int]:
    hist: dict[str, int] = {}
    for o in outcomes:
        label = str(o.status) if o.status is not None else f"no-answer:{o.error}"
        hist[label] = hist.get(label, 0) + 1
    return dict(sorted(hist.items()))


def assert_clean_error(out: Outcome, statuses: tuple[int, ...] = (503,)) -> None:
    """A failed request is an expected status with a JSON error body, no traceback."""
    context = f"{out.status} {out.content_type} {out.body[:500]!r}"
    assert out.status in statuses, context
    assert out.content_type.startswith("application/json"), context
    assert "Traceback" not in out.body and 'File "' not in out.body, context
    body = json.loads(out.body)
    assert isinstance(body, dict), context
    assert isinstance(body.get("error"), str) and isinstance(body.get("error_description"), str)
    if out.status in (503, 504):
        assert body["error"] == "service_unavailable", context


@dataclass
class Settled:
    """Each logical call's final token_call, from its first 201 or from a retry."""

    token_by_key: dict[str, str] = field(default_factory=dict)
    retried: int = 0
    retry_found_existing: int = 0  # retry answered "replayed": the lost-answer call existed
    retry_created: int = 0
    replays_checked: int = 0


def settle(
    url: str,
    tokens: list[str],
    outcomes: list[Outcome],
    replay_sample: int = 20,
    attempts: int = 3,
    threads: int = 4,
) -> Settled:
    """Retry every non-201 with the same key (must now be 201), replay a sample of 201s
    (must return the same call, marked replayed)."""
    result = Settled()
    for out in outcomes:
        if out.status == 201:
            assert out.token_call, out.body
            assert out.key not in result.token_by_key, "one key, two 201s"
            result.token_by_key[out.key] = out.token_call
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            sessions.append(local.session)
        return local.session  # type: ignore[no-any-return]

    def retry(out: Outcome) -> Outcome:
        again = None
        for _ in range(attempts):
            again = post_call(session(), url, tokens[out.user], out.key, out.user)
            if again.status == 201:
                break
            time.sleep(0.5)
        assert again is not None and again.status == 201 and again.token_call, (out, again)
        return again

    def replay(out: Outcome) -> None:
        again = post_call(session(), url, tokens[out.user], out.key, out.user)
        assert again.status == 201 and again.replayed, again
        assert again.token_call == out.token_call, (out, again)

    unknown = [o for o in outcomes if o.status != 201]
    ok = [o for o in outcomes if o.status == 201]
    sample = random.Random(7).sample(ok, min(replay_sample, len(ok)))
    sessions: list[requests.Session] = []
    try:
        with ThreadPoolExecutor(threads) as pool:
            for out, again in zip(unknown, pool.map(retry, unknown), strict=True):
                result.retried += 1
                if again.replayed:
                    result.retry_found_existing += 1
                else:
                    result.retry_created += 1
                assert again.token_call is not None
                result.token_by_key[out.key] = again.token_call
            for _ in pool.map(replay, sample):
                result.replays_checked += 1
    finally:
        for s in sessions:
            s.close()
    return result


def calls_in_db(engine: sa.Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT token_call, idempotency_key FROM calls")).all()
    return {row[0]: row[1] for row in rows}


def assert_no_lost_no_phantom(engine: sa.Engine, settled: Settled) -> int:
    """The DB's calls are exactly the ones handed out in 201s, one per Idempotency-Key."""
    in_db = calls_in_db(engine)
    expected = set(settled.token_by_key.values())
    lost = expected - set(in_db)
    phantom = set(in_db) - expected
    assert not lost, f"{len(lost)} call(s) got a 201 but are not in the database: {lost}"
    assert not phantom, f"{len(phantom)} call(s) in the database never got a 201: {phantom}"
    for key, token in settled.token_by_key.items():
        assert in_db[token] == key, (key, token, in_db[token])
    assert len(in_db) == len(settled.token_by_key)
    return len(in_db)


# -- gunicorn processes ------------------------------------------------------------------
def children(pid: int) -> list[int]:
    result: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            result += [int(p) for p in task.read_text().split()]
        except OSError:
            pass
    return sorted(set(result))


def worker_pids(master: int, expected: int, timeout: float = 30) -> list[int]:
    """The master's worker processes, once there are ``expected`` of them, all booted."""
    deadline = time.monotonic() + timeout
    while True:
        pids = children(master)
        if len(pids) == expected:
            return pids
        if time.monotonic() > deadline:
            raise AssertionError(f"gunicorn {master} has workers {pids}, expected {expected}")
        time.sleep(0.1)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def assert_log_clean(log: str, service: str) -> None:
    """No unhandled exception and no 500 in a service's log."""
    bad = [
        line
        for line in log.splitlines()
        if '"unhandled error"' in line
        or '"database error"' in line
        or '"status": 500' in line
        or "Traceback" in line
    ]
    assert not bad, f"{service} logged failures:\n" + "\n".join(bad[:20])
