"""Soak: ``SOAK_SECONDS`` (``make soak``: 600) of mixed load on both services.

Skipped unless ``SOAK_SECONDS`` is set (not part of ``make test`` / CI).

Load: two client threads per seeded user, each looping POST (with an Idempotency-Key) →
GET the call (JSON, then XML) → GET the ongoing list → replay the POST → PUT (end); with
the default limit of 2 ongoing calls per user this stays exactly at the limit without
crossing it. One admin thread gets a client-credentials token from the auth server, reads
the JWKS and metadata, and the admin view of a user.

Guarantees asserted:
- no errors: every answer has the status its operation expects (no 409, no 5xx, no
  transport error), and no gunicorn worker was replaced;
- RSS of every gunicorn worker (``/proc/<pid>/status`` VmRSS) stays flat: the peak after
  warm-up (the first sixth of the run, at least 10 s) is < 10 % above the value at the end
  of warm-up;
- the database agrees: one call per POST, all ended.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests
import sqlalchemy as sa

from tests.faults.conftest import FaultEnv, services
from tests.faults.load import (
    NUMBER,
    assert_log_clean,
    bearer,
    report,
    rss_kib,
    worker_pids,
)

pytestmark = [pytest.mark.faults, pytest.mark.soak]

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "0") or 0)
MAX_RSS_GROWTH = 0.10
SAMPLE_EVERY = 2.0
TOKEN_REFRESH = 1800.0  # user tokens live an hour; mint new ones every half hour


@dataclass
class Tally:
    ok: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    created: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, op: str, r: requests.Response | None, expected: int, exc: str = "") -> bool:
        with self.lock:
            if r is not None and r.status_code == expected:
                self.ok[op] += 1
                return True
            detail = exc if r is None else f"{r.status_code} {r.text[:200]!r}"
            self.errors.append(f"{op}: expected {expected}, got {detail}")
            return False


def call(
    tally: Tally, op: str, expected: int, fn: object, *args: object, **kwargs: object
) -> requests.Response | None:
    try:
        r = fn(*args, timeout=30, **kwargs)  # type: ignore[operator]
    except requests.RequestException as exc:
        tally.check(op, None, expected, type(exc).__name__)
        return None
    tally.check(op, r, expected)
    return r  # type: ignore[no-any-return]


@pytest.mark.skipif(not SOAK_SECONDS, reason="soak: set SOAK_SECONDS (make soak)")
def test_soak_mixed_load(env: FaultEnv) -> None:
    warmup = max(10.0, SOAK_SECONDS / 6)
    tokens = env.tokens()
    token_lock = threading.Lock()
    stop = threading.Event()
    tally = Tally()
    api_cm = env.call_api(workers=2, threads=4, CALL_MAX_ONGOING_DEFAULT="2")
    with services(env.auth_server(workers=2), api_cm) as (auth, api):
        pids = {
            "call_api": worker_pids(api.process.pid, 2),
            "auth_server": worker_pids(auth.process.pid, 2),
        }

        def user_loop(user: int) -> None:
            with requests.Session() as s:
                while not stop.is_set():
                    with token_lock:
                        h = bearer(tokens[user])
                    key = uuid.uuid4().hex
                    r = call(
                        tally,
                        "POST /rest/call",
                        201,
                        s.post,
                        f"{api.url}/rest/call",
                        data={"number": NUMBER},
                        headers={**h, "Idempotency-Key": key},
                    )
                    if r is None or r.status_code != 201:
                        stop.wait(1)
                        continue
                    token_call = r.json()["token_call"]
                    with tally.lock:
                        tally.created.add(token_call)
                    url = f"{api.url}/rest/call?token_call={token_call}"
                    call(tally, "GET /rest/call?token_call", 200, s.get, url, headers=h)
                    call(
                        tally,
                        "GET (xml)",
                        200,
                        s.get,
                        url,
                        headers={**h, "Accept": "application/xml"},
                    )
                    call(
                        tally,
                        "GET /rest/call (list)",
                        200,
                        s.get,
                        f"{api.url}/rest/call",
                        headers=h,
                    )
                    replay = call(
                        tally,
                        "POST replay",
                        201,
                        s.post,
                        f"{api.url}/rest/call",
                        data={"number": NUMBER},
                        headers={**h, "Idempotency-Key": key},
                    )
                    if replay is not None and replay.status_code == 201:
                        if replay.json()["token_call"] != token_call:
                            tally.check("POST replay (same call)", None, 201, "another call")
                    call(
                        tally,
                        "PUT /rest/call",
                        200,
                        s.put,
                        f"{api.url}/rest/call",
                        data={"token_call": token_call},
                        headers=h,
                    )
                    stop.wait(0.02)

        def admin_loop() -> None:
            with requests.Session() as s:
                while not stop.is_set():
                    r = call(
                        tally,
                        "POST /oauth/token (client_credentials)",
                        200,
                        s.post,
                        f"{auth.url}/oauth/token",
                        data={"grant_type": "client_credentials", "scope": "admin"},
                        auth=(env.admin_client.client_id, env.admin_client.client_secret or ""),
                    )
                    call(tally, "GET jwks", 200, s.get, f"{auth.url}/.well-known/jwks.json")
                    call(
                        tally,
                        "GET metadata",
                        200,
                        s.get,
                        f"{auth.url}/.well-known/oauth-authorization-server",
                    )
                    if r is not None and r.status_code == 200:
                        admin = bearer(r.json()["access_token"])
                        for user in env.users:
                            call(
                                tally,
                                "GET /admin/users/<sub>",
                                200,
                                s.get,
                                f"{api.url}/admin/users/{user.id}",
                                headers=admin,
                            )
                    stop.wait(0.5)

        threads = [
            threading.Thread(target=user_loop, args=(u,), daemon=True)
            for u in range(len(tokens))
            for _ in range(2)
        ]
        threads.append(threading.Thread(target=admin_loop, daemon=True))
        samples: dict[int, list[tuple[float, int]]] = {p: [] for ps in pids.values() for p in ps}
        started = time.monotonic()
        minted = started
        for t in threads:
            t.start()
        try:
            while (now := time.monotonic()) - started < SOAK_SECONDS:
                for pid in samples:
                    kib = rss_kib(pid)
                    assert kib is not None, f"worker {pid} is gone"
                    samples[pid].append((now - started, kib))
                if now - minted > TOKEN_REFRESH:
                    fresh = env.tokens_fresh()
                    with token_lock:
                        tokens[:] = fresh
                    minted = now
                if len(tally.errors) > 50:
                    break
                time.sleep(SAMPLE_EVERY)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        elapsed = time.monotonic() - started
        assert worker_pids(api.process.pid, 2) == pids["call_api"], "a worker was replaced"
        assert worker_pids(auth.process.pid, 2) == pids["auth_server"], "a worker was replaced"
        assert_log_clean(api.log(), "call_api")
        assert_log_clean(auth.log(), "auth_server")

    assert not tally.errors, f"{len(tally.errors)} errors, first: {tally.errors[:10]}"
    total = sum(tally.ok.values())
    with env.calls_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, count(*) FROM calls GROUP BY status")).all()
    assert dict(rows) == {"ended": len(tally.created)}, (dict(rows), len(tally.created))

    lines = []
    too_much = []
    for service, worker_list in pids.items():
        for pid in worker_list:
            series = samples[pid]
            after = [kib for t, kib in series if t >= warmup]
            assert after, "no samples after warm-up"
            base, peak, last = after[0], max(after), after[-1]
            growth = (peak - base) / base
            lines.append(
                f"{service} worker {pid}: start {series[0][1] / 1024:.1f} MiB, after warm-up "
                f"{base / 1024:.1f}, peak {peak / 1024:.1f}, end {last / 1024:.1f} MiB "
                f"(+{growth * 100:.1f} %)"
            )
            if growth >= MAX_RSS_GROWTH:
                too_much.append(lines[-1])
    report(
        f"soak {elapsed:.0f}s (warm-up {warmup:.0f}s): {total} requests "
        f"({total / elapsed:.0f}/s), 0 errors, {len(tally.created)} calls started and ended; "
        + "; ".join(f"{op} {n}" for op, n in sorted(tally.ok.items()))
    )
    for line in lines:
        report("  " + line)
    assert not too_much, f"RSS grew {MAX_RSS_GROWTH:.0%} or more after warm-up: {too_much}"
