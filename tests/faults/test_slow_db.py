"""A slow database: another session holds a lock (and sits in ``pg_sleep``) far longer than
the call API's configured ``DB_STATEMENT_TIMEOUT_MS`` (which sets both the PostgreSQL
``statement_timeout`` and ``lock_timeout`` of its connections).

Guarantees asserted:
- requests that need the locked rows give up with 503 ``service_unavailable`` (JSON, no
  traceback) after about the timeout: every one returns within 3x the timeout even under a
  steady stream, so they do not pile up;
- with a row lock on one user's ``call_users`` row, the other users are unaffected: their
  POSTs keep getting 201 while the lock is held;
- with an exclusive lock on the whole ``calls`` table, every call endpoint answers 503
  within the bound while ``/healthz`` (no table) stays 200;
- when the lock holder finishes, the next requests succeed (no restart), and no call exists
  for a 503 (retrying them with the same key creates each exactly once).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest
import requests

from tests.faults.conftest import FaultEnv, services
from tests.faults.load import (
    Outcome,
    Prober,
    assert_clean_error,
    assert_log_clean,
    assert_no_lost_no_phantom,
    bearer,
    histogram,
    post_call,
    report,
    scaled,
    settle,
)

pytestmark = pytest.mark.faults

TIMEOUT_MS = 1000
BOUND = 3 * TIMEOUT_MS / 1000  # seconds: "not piling up"
# Clients held up at once (victim streams + 3 other users + 2 probes) stay within one
# worker's 8 threads, so even an uneven spread over the 2 workers queues at most one wait.
VICTIM_THREADS = 4


@contextmanager
def lock_held(
    env: FaultEnv, sql: str, params: tuple[object, ...], seconds: float
) -> Iterator[threading.Event]:
    """Take a lock in a separate superuser session (no timeouts), then ``pg_sleep`` in the
    same transaction for ``seconds``; the event is set once the transaction has ended."""
    conn = psycopg2.connect(env.cluster.dsn("clickcall_calls"), connect_timeout=5)
    released = threading.Event()
    cur = conn.cursor()
    cur.execute(sql, params)  # opens the transaction and takes the lock

    def sleep_then_commit() -> None:
        try:
            cur.execute("SELECT pg_sleep(%s)", (seconds,))
            conn.commit()
        finally:
            released.set()

    holder = threading.Thread(target=sleep_then_commit, daemon=True)
    holder.start()
    try:
        yield released
    finally:
        holder.join(seconds + 30)
        conn.close()


class Stream:
    """``threads`` clients POSTing for ``user`` in a loop until stopped (unique keys)."""

    def __init__(self, url: str, tokens: list[str], user: int, threads: int) -> None:
        self.url, self.tokens, self.user = url, tokens, user
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with requests.Session() as s:
            while not self._stop.is_set():
                out = post_call(s, self.url, self.tokens[self.user], uuid.uuid4().hex, self.user)
                with self._lock:
                    self.outcomes.append(out)
                self._stop.wait(0.02)

    def start(self) -> Stream:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        for t in self._threads:
            t.join(30)
            assert not t.is_alive()


@pytest.mark.parametrize("scope", ["row", "table"])
def test_slow_database_times_out_instead_of_piling_up(env: FaultEnv, scope: str) -> None:
    tokens = env.tokens()
    victim = 0
    victim_subject = env.users[victim].id
    hold = scaled(8.0, 40.0)
    # Stopping the clients takes up to one request (< BOUND): all are answered before the
    # lock goes away.
    load_for = hold - BOUND - 2.0
    api_cm = env.call_api(workers=2, threads=8, DB_STATEMENT_TIMEOUT_MS=str(TIMEOUT_MS))
    with services(api_cm) as (api,), requests.Session() as http:
        # Every user's call_users row exists (the first POST creates it).
        setup = [
            post_call(http, api.url, tokens[u], uuid.uuid4().hex, u) for u in range(len(tokens))
        ]
        assert all(o.status == 201 for o in setup), [(o.status, o.body[:200]) for o in setup]
        if scope == "row":
            sql = "SELECT subject FROM call_users WHERE subject = %s FOR UPDATE"
            params: tuple[object, ...] = (victim_subject,)
        else:
            sql = "LOCK TABLE calls IN ACCESS EXCLUSIVE MODE"
            params = ()
        health = Prober("healthz", lambda s: s.get(f"{api.url}/healthz", timeout=20), 0.1)
        reads = Prober(
            "list",
            lambda s: s.get(f"{api.url}/rest/call", headers=bearer(tokens[1]), timeout=20),
            0.1,
        )
        with lock_held(env, sql, params, hold) as released:
            locked_at = time.monotonic()
            health.start()
            reads.start()
            victims = Stream(api.url, tokens, victim, VICTIM_THREADS)
            others = [Stream(api.url, tokens, u, 1) for u in range(len(tokens)) if u != victim]
            streams = [victims, *others]
            for stream in streams:
                stream.start()
            try:
                time.sleep(load_for)
            finally:
                for stream in streams:
                    stream.stop()
                for stream in streams:
                    stream.join()
            stopped_at = time.monotonic()
            health_out = health.stop()
            read_out = reads.stop()
            assert not released.is_set(), "the lock holder finished too early"
        released_at = time.monotonic()

        victim_out = victims.outcomes
        other_out = [x for o in others for x in o.outcomes]
        assert victim_out and all(o.finished < released_at for o in victim_out)
        for o in victim_out:
            assert_clean_error(o, (503,))
            assert o.elapsed < BOUND, f"{o.elapsed:.2f}s > {BOUND}s: piling up"
        assert all(o.status == 200 for o in health_out), histogram(health_out)
        if scope == "row":
            # Other users: unaffected while the lock is held.
            assert other_out and all(o.status == 201 for o in other_out), histogram(other_out)
            assert all(o.status == 200 for o in read_out), histogram(read_out)
        else:
            for o in other_out + read_out:
                assert o.status == 503, (o.started - locked_at, o.finished - locked_at, o.body)
                assert_clean_error(o, (503,))
                assert o.elapsed < BOUND, o.elapsed

        # Lock gone: everyone is served again, no restart needed.
        after = [
            post_call(http, api.url, tokens[u], uuid.uuid4().hex, u) for u in range(len(tokens))
        ]
        assert all(o.status == 201 for o in after), [(o.status, o.body[:200]) for o in after]

        everything = setup + victim_out + other_out + after
        settled = settle(api.url, tokens, everything)
        assert settled.retry_found_existing == 0, "a 503 had created a call"
        rows = assert_no_lost_no_phantom(env.calls_engine, settled)
        assert_log_clean(api.log(), "call_api")

    latencies = sorted(o.elapsed for o in victim_out)
    report(
        f"slow DB ({scope} lock held {hold:.0f}s, DB_STATEMENT_TIMEOUT_MS={TIMEOUT_MS}): "
        f"locked-out POSTs {histogram(victim_out)} in {stopped_at - locked_at:.1f}s, latency "
        f"median {latencies[len(latencies) // 2]:.2f}s max {latencies[-1]:.2f}s "
        f"(bound {BOUND:.0f}s); other users' POSTs {histogram(other_out)} (max "
        f"{max(o.elapsed for o in other_out):.2f}s), "
        f"GET /rest/call {histogram(read_out)} (max {max(o.elapsed for o in read_out):.2f}s), "
        f"/healthz {histogram(health_out)}; "
        f"{settled.retried} retried after release, DB rows {rows}"
    )
