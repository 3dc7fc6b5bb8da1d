"""Dialers under faults: two replicas and two webhook workers under load, and a dialer that
dies holding its claims.

Real processes over HTTP: the call API under gunicorn, ``call-api simulator`` replicas (each
with its own ``SIMULATOR_ID``, getting its dialer token from a real auth server),
``call-api worker`` processes, and a real receiving HTTP server in the test that verifies
every delivery with ``standardwebhooks``.

Guarantees asserted:
- **two dialers, two workers, load** (PostgreSQL, its API on 2 gunicorn workers): a burst
  of concurrent POSTs per user to a number that stays in-progress until the app hangs up
  (so no call can end while the burst lasts) gets exactly the limit's worth of 201s, every
  other POST a 409 ``max_calls_exceeded`` — a broken lock would let more through; then the
  users keep calling the answering test number: no refusal happens below the limit, no
  snapshot of the table ever shows a user above it, every call is claimed exactly once
  (``claims`` 1, one ``call.ringing``) by one of the two simulators and ends ``completed``,
  and every event is delivered exactly once (one attempt), in order per call;
- **a dialer killed holding claims** (PostgreSQL and SQLite): of the calls it held, the
  queued ones are claimed again by a second dialer (``claims`` 2) and completed by it, the
  ringing ones end ``failed`` and the answered ones ``completed``, both ``end_reason:
  dialer-lost`` — within a deadline, never stuck — and all their events are delivered.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.faults.conftest import FaultEnv, LifecycleEnv, Stack
from tests.faults.lifecycle import (
    ANSWERS,
    EXPECTED_TYPES,
    Api,
    bearer,
    check_deliveries,
    doomed_ready,
    processes,
    receivers,
    start_doomed_dialer,
    start_simulator,
    start_worker,
    wait_for,
)
from tests.faults.load import report, scaled

pytestmark = pytest.mark.faults

LIMIT = 3
STAYS = "+14155550123"  # the simulator answers it; it talks until the app hangs up
THREADS = LIMIT + 1  # per user: one more than its calls can be, so some POSTs meet the limit


def undelivered(stack: Stack) -> int:
    return int(stack.scalar("SELECT count(*) FROM call_events WHERE delivery <> 'delivered'"))


def live_calls(stack: Stack) -> int:
    return int(stack.scalar("SELECT count(*) FROM calls WHERE status = 'ongoing'"))


class Caller:
    """One user's POST /rest/call attempts, from several threads."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.lock = threading.Lock()
        self.created: list[str] = []
        self.refusals: list[dict[str, Any]] = []
        self.unexpected: list[str] = []
        self.in_flight = 0
        self.local = threading.local()

    def session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        return session  # type: ignore[no-any-return]

    def post(self, number: str = ANSWERS) -> int:
        r = self.session().post(
            f"{self.url}/rest/call",
            json={"number": number},
            headers=bearer(self.token),
            timeout=20,
        )
        with self.lock:
            if r.status_code == 201:
                self.created.append(r.json()["token_call"])
            elif r.status_code == 409 and r.json().get("error") == "max_calls_exceeded":
                self.refusals.append(r.json())
            else:
                self.unexpected.append(f"{r.status_code} {r.text[:300]}")
        return r.status_code

    def hang_up(self, token_call: str) -> None:
        r = self.session().put(
            f"{self.url}/rest/call",
            json={"token_call": token_call},
            headers=bearer(self.token),
            timeout=20,
        )
        assert r.status_code == 200, r.text
        assert (r.json()["state"], r.json()["end_reason"]) == ("completed", "hangup"), r.text

    def until(self, total: int, stop: threading.Event) -> None:
        """POST until this user has ``total`` calls (the threads never have more POSTs in
        flight than calls still to make); back off after a 409."""
        while not stop.is_set():
            with self.lock:
                if len(self.created) >= total or self.unexpected:
                    return
                go = len(self.created) + self.in_flight < total
                self.in_flight += go
            if not go:
                stop.wait(0.02)
                continue
            try:
                status = self.post()
            finally:
                with self.lock:
                    self.in_flight -= 1
            if status != 201:
                stop.wait(0.2)


def test_two_dialers_two_workers_under_load(
    env: FaultEnv, lifecycle: LifecycleEnv, stacks: dict[str, Stack]
) -> None:
    tokens = lifecycle.user_tokens()
    per_user = scaled(10, 60)
    burst = 8  # concurrent POSTs per user, all at once
    stack = stacks["postgresql"]  # its API runs 2 gunicorn workers, limit LIMIT
    assert stack.env["CALL_MAX_ONGOING_DEFAULT"] == str(LIMIT)
    with receivers("load") as (hook,), processes() as procs:
        api = Api(stack.url, lifecycle.admin_token())
        hook.secret = api.set_webhook(env.web_client.client_id, hook.url)
        for name in ("worker-1", "worker-2"):
            start_worker(procs, stack.env, name)
        sim_env = lifecycle.simulator_env(stack, ring=0.2, talk=0.3)
        for name in ("sim-a", "sim-b"):
            start_simulator(procs, sim_env, name)
        callers = [Caller(stack.url, t) for t in tokens]

        # 1. The burst, to a number that stays in-progress until the app hangs up: no call
        # can end while it lasts, so exactly LIMIT POSTs per user may succeed.
        start = threading.Barrier(len(callers) * burst)

        def burst_post(caller: Caller) -> int:
            start.wait(30)
            return caller.post(STAYS)

        with ThreadPoolExecutor(len(callers) * burst) as pool:
            statuses = list(pool.map(burst_post, [c for c in callers for _ in range(burst)]))
        assert Counter(statuses) == {201: LIMIT * len(callers), 409: (burst - LIMIT) * len(callers)}
        for caller in callers:
            assert len(caller.created) == LIMIT and not caller.unexpected, caller.unexpected
            assert all(r["ongoing"] == LIMIT == r["max_ongoing"] for r in caller.refusals)
        held = [t for c in callers for t in c.created]
        for token_call in held:  # the simulators answer them; then the app hangs up
            wait_for("answered", lambda t=token_call: api.call(t)["state"] == "in-progress", 20)
        for caller in callers:
            for token_call in caller.created:
                caller.hang_up(token_call)

        # 2. The users keep calling the answering number until each has per_user calls.
        stop = threading.Event()
        most_live: Counter[str] = Counter()

        def watch() -> None:
            # Each SELECT is one snapshot: a user above the limit in any of them is a
            # broken limit (this can miss a violation, never invent one).
            while not stop.wait(0.05):
                for subject, live in stack.rows(
                    "SELECT subject, count(*) FROM calls WHERE status = 'ongoing' GROUP BY subject"
                ):
                    most_live[subject] = max(most_live[subject], live)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(len(callers) * THREADS) as pool:
                jobs = [
                    pool.submit(c.until, LIMIT + per_user, stop)
                    for c in callers
                    for _ in range(THREADS)
                ]
                for job in jobs:
                    job.result(timeout=120)
            wait_for("every call ends", lambda: not live_calls(stack), 30)
        finally:
            stop.set()
            watcher.join(10)
        ran = time.monotonic() - started
        wait_for("every event delivered", lambda: not undelivered(stack), 30)

        for caller in callers:
            assert not caller.unexpected, caller.unexpected
            assert len(caller.created) == LIMIT + per_user
            # A refusal only ever at the limit: never one call short of it.
            assert all(r["ongoing"] == LIMIT == r["max_ongoing"] for r in caller.refusals)
        assert most_live and max(most_live.values()) <= LIMIT, most_live
        created = [t for c in callers for t in c.created]
        rows = {
            r[0]: tuple(r[1:])
            for r in stack.rows(
                "SELECT token_call, claims, dialer_id, state, end_reason FROM calls"
            )
        }
        assert set(rows) == set(created) and len(created) == len(set(created))
        ends = {t: "hangup" if t in held else "remote" for t in created}
        for token_call, (claims, dialer_id, state, end_reason) in rows.items():
            assert claims == 1 and dialer_id in ("sim-a", "sim-b"), rows[token_call]
            assert (state, end_reason) == ("completed", ends[token_call]), rows[token_call]
        events = {t: api.events(t) for t in created}
        for token_call, listed in events.items():
            assert [e["type"] for e in listed] == EXPECTED_TYPES[ANSWERS], listed
            last = "app" if token_call in held else "dialer"
            assert [e["source"] for e in listed] == ["app", "dialer", "dialer", last]
            for event in listed:
                assert event["delivery"] == "delivered" and len(event["attempt_log"]) == 1
        counts = check_deliveries(hook.snapshot(), events, exactly_once=True)
        assert all(p.process.poll() is None for p in procs.started), procs.logs()
        by_dialer = Counter(r[1] for r in rows.values())
        by_worker = Counter(
            e["attempt_log"][0]["worker"] for listed in events.values() for e in listed
        )

    report(
        f"2 simulators + 2 webhook workers, {len(callers)} users (limit {LIMIT}): burst of "
        f"{burst} POSTs/user -> exactly {LIMIT} 201s each; then {len(created) - len(held)} "
        f"calls in {ran:.1f}s, most live per user {max(most_live.values())}; every call "
        f"claimed once ({dict(by_dialer)}), {counts['events']} events delivered once each "
        f"({dict(by_worker)})"
    )


def test_dialer_killed_holding_claims(
    env: FaultEnv, lifecycle: LifecycleEnv, stacks: dict[str, Stack]
) -> None:
    backends = ["postgresql", "sqlite"]  # side by side
    used = [stacks[b] for b in backends]
    tokens = lifecycle.user_tokens()
    lease = int(used[0].env["CALL_DIALER_LEASE_SECONDS"])
    groups = {"queued": 2, "ringing": 2, "in-progress": 2}
    with receivers(*backends) as hooks, processes() as procs:
        apis = [Api(s.url, lifecycle.admin_token()) for s in used]
        doomed = []
        for stack, api, hook in zip(used, apis, hooks, strict=True):
            hook.secret = api.set_webhook(env.web_client.client_id, hook.url)
            start_worker(procs, stack.env, f"worker-{stack.backend}")
            for i in range(sum(groups.values())):
                api.open_call(tokens[i % len(tokens)], ANSWERS)
            doomed.append(
                start_doomed_dialer(
                    procs,
                    stack.url,
                    lifecycle.dialer_token(),
                    f"doomed-{stack.backend}",
                    queued=groups["queued"],
                    ringing=groups["ringing"],
                    answered=groups["in-progress"],
                )
            )
        held = [doomed_ready(p) for p in doomed]
        for stack, api, holding in zip(used, apis, held, strict=True):
            for state, token_calls in holding.items():
                assert len(token_calls) == groups[state]
                for token_call in token_calls:
                    assert api.call(token_call)["state"] == state
            assert [
                tuple(r) for r in stack.rows("SELECT DISTINCT dialer_id, claims FROM calls")
            ] == [(f"doomed-{stack.backend}", 1)]
        # A second dialer (the simulator) runs from now on: it finds nothing to claim.
        for stack in used:
            sim_env = lifecycle.simulator_env(stack, ring=0.2, talk=0.3)
            start_simulator(procs, sim_env, f"second-{stack.backend}")
        # Past the lease the first still holds them all: its polls renew the leases (the
        # second's polls, and reading a call, would settle a call whose lease had lapsed).
        time.sleep(lease * 1.25)
        for api, holding in zip(apis, held, strict=True):
            for state, token_calls in holding.items():
                assert [api.call(t)["state"] for t in token_calls] == [state] * len(token_calls)
        for stack in used:
            assert [
                tuple(r) for r in stack.rows("SELECT DISTINCT dialer_id, claims FROM calls")
            ] == [(f"doomed-{stack.backend}", 1)]
        # kill -9.
        for proc in doomed:
            proc.kill()
            assert proc.process.returncode == -signal.SIGKILL
        killed = time.monotonic()
        for stack in used:
            wait_for(f"{stack.backend}: no call stuck", lambda s=stack: not live_calls(s), 20)
        settled = time.monotonic() - killed
        for stack in used:
            wait_for(f"{stack.backend}: all delivered", lambda s=stack: not undelivered(s), 20)

        for stack, api, hook, holding in zip(used, apis, hooks, held, strict=True):
            rows = {
                r[0]: tuple(r[1:])
                for r in stack.rows(
                    "SELECT token_call, claims, dialer_id, state, end_reason FROM calls"
                )
            }
            second = f"second-{stack.backend}"
            first = f"doomed-{stack.backend}"
            expected = {
                "queued": (2, second, "completed", "remote"),
                "ringing": (1, first, "failed", "dialer-lost"),
                "in-progress": (1, first, "completed", "dialer-lost"),
            }
            types = {
                "queued": EXPECTED_TYPES[ANSWERS],
                "ringing": ["call.queued", "call.ringing", "call.failed"],
                "in-progress": EXPECTED_TYPES[ANSWERS],
            }
            events = {}
            for state, token_calls in holding.items():
                for token_call in token_calls:
                    assert rows[token_call] == expected[state], (state, rows[token_call])
                    listed = api.events(token_call)
                    events[token_call] = listed
                    assert [e["type"] for e in listed] == types[state], listed
                    if state != "queued":  # the dialer-lost end is the system's doing
                        assert listed[-1]["source"] == "system"
                        assert listed[-1]["payload"]["data"]["end_reason"] == "dialer-lost"
            check_deliveries(hook.snapshot(), events, exactly_once=True)

    report(
        f"dialer kill -9 holding {groups} on {' and '.join(backends)} (lease {lease}s): "
        f"requeued, failed, completed by rule {settled:.1f}s after the kill; events delivered"
    )
