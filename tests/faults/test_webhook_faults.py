"""Status webhooks under faults: the receiver down for a minute, the worker killed mid-POST.

Real processes over HTTP — the call API under gunicorn, ``call-api worker``, ``call-api
simulator`` (or the test speaking the dialer interface) — and a real receiving HTTP server
in the test that verifies every delivery with ``standardwebhooks``. Each test runs a
PostgreSQL stack (the fault cluster) and a SQLite stack side by side.

Guarantees asserted:
- **receiver down for 60 s, then back**: calls made during the outage go through their
  lifecycle regardless (the outbox decouples them from delivery); while the receiver is down
  only the first event of each call is tried (refused connections on one stack, 503s on the
  other), with backoff; once it is back every event of every call arrives, verified, exactly
  once, in order per call, and the attempt log shows the failed attempts before the success;
- **worker killed (SIGKILL) mid-delivery**: the receiver holds the worker's first POST open,
  the worker is killed, another worker starts; when the killed worker's lease lapses
  (``CALL_WEBHOOK_LEASE_SECONDS``) the events it held are sent again: nothing lost, order per
  call kept, a repeat only with the same webhook-id and body, never two at once; the killed
  worker left no trace in the attempt log (it never got to record).
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.conftest import FaultEnv, LifecycleEnv, Stack
from tests.faults.lifecycle import (
    ANSWERS,
    BUSY,
    EXPECTED_TYPES,
    FAILS,
    Api,
    HttpDialer,
    Proc,
    Receiver,
    check_deliveries,
    processes,
    receivers,
    start_simulator,
    start_worker,
    wait_for,
)
from tests.faults.load import report

pytestmark = pytest.mark.faults

BACKENDS = ["postgresql", "sqlite"]
OUTAGE = 60.0  # seconds: the minute, in `make test` as in `make faults`
FAST_RETRIES = {"CALL_WEBHOOK_BACKOFF_BASE": "0.5", "CALL_WEBHOOK_BACKOFF_MAX": "5"}


def undelivered(stack: Stack) -> int:
    return int(stack.scalar("SELECT count(*) FROM call_events WHERE delivery <> 'delivered'"))


def live_calls(stack: Stack) -> int:
    return int(stack.scalar("SELECT count(*) FROM calls WHERE status = 'ongoing'"))


def test_receiver_down_for_a_minute_then_back(
    env: FaultEnv, lifecycle: LifecycleEnv, stacks: dict[str, Stack]
) -> None:
    tokens = lifecycle.user_tokens()
    client_id = env.web_client.client_id
    admin = lifecycle.admin_token()
    waves = [  # (seconds into the outage, the numbers each user calls)
        (0.0, [ANSWERS, BUSY]),
        (20.0, [FAILS]),
        (40.0, [ANSWERS]),
    ]
    used = [stacks[b] for b in BACKENDS]
    with receivers(*BACKENDS) as hooks, processes() as procs:
        apis = [Api(s.url, admin) for s in used]
        for api, hook in zip(apis, hooks, strict=True):
            hook.secret = api.set_webhook(client_id, hook.url)
        # The outage: PostgreSQL's receiver refuses connections, SQLite's answers 503.
        refused, failing = hooks
        refused.down()
        failing.status = 503
        for stack in used:
            start_worker(procs, {**stack.env, **FAST_RETRIES}, f"worker-{stack.backend}")
            sim_env = lifecycle.simulator_env(stack, ring=0.2, talk=0.3)
            start_simulator(procs, sim_env, f"sim-{stack.backend}")
        started = time.monotonic()
        opened: list[dict[str, str]] = [{} for _ in used]  # token_call -> number
        for at, numbers in waves:
            time.sleep(max(0.0, started + at - time.monotonic()))
            for api, calls in zip(apis, opened, strict=True):
                for token in tokens:
                    for number in numbers:
                        calls[api.open_call(token, number)] = number
            # The calls go on without the receiver: each reaches its final state.
            for stack in used:
                wait_for(f"{stack.backend}: calls end", lambda s=stack: not live_calls(s), 15)
        time.sleep(max(0.0, started + OUTAGE - 2 - time.monotonic()))

        # Near the end of the outage: nothing got through, and only each call's first event
        # was tried (a later event waits for the earlier one), again and again.
        assert refused.snapshot() == []
        tried = failing.snapshot()
        assert tried and all(d.status == 503 and d.verified for d in tried)
        assert {d.event["type"] for d in tried if d.event} == {"call.queued"}
        for stack in used:
            attempts = stack.rows(
                "SELECT e.type, count(a.id) FROM call_events e "
                "LEFT JOIN webhook_attempts a ON a.event_id = e.id GROUP BY e.id, e.type"
            )
            assert all(n >= 3 if t == "call.queued" else n == 0 for t, n in attempts), attempts
        time.sleep(max(0.0, started + OUTAGE - time.monotonic()))
        outage = time.monotonic() - started

        # Back: every event arrives.
        refused.up()
        failing.status = None
        back = time.monotonic()
        for stack in used:
            wait_for(f"{stack.backend}: all delivered", lambda s=stack: not undelivered(s), 45)
        recovered = time.monotonic() - back

        lines = []
        for stack, api, hook, calls in zip(used, apis, hooks, opened, strict=True):
            events = {t: api.events(t) for t in calls}
            for token_call, number in calls.items():
                assert [e["type"] for e in events[token_call]] == EXPECTED_TYPES[number]
                for event in events[token_call]:
                    assert event["delivery"] == "delivered" and event["last_status"] == 204
                    log = event["attempt_log"]
                    assert log[-1]["status_code"] == 204 and log[-1]["error"] is None
                    assert all(a["worker"] == f"worker-{stack.backend}" for a in log)
                first = events[token_call][0]["attempt_log"]
                failures = first[:-1]
                assert len(failures) >= 3, first
                if hook is refused:
                    assert all(
                        a["status_code"] is None and "could not connect" in a["error"]
                        for a in failures
                    ), failures
                else:
                    assert all(
                        a["status_code"] == 503 and a["error"] == "HTTP 503" for a in failures
                    ), failures
            counts = check_deliveries(
                [d for d in hook.snapshot() if d.ok], events, exactly_once=True
            )
            check_deliveries(hook.snapshot(), events, exactly_once=True)
            lines.append(
                f"{stack.backend}: {len(calls)} calls, {counts['events']} events, "
                f"{len(hook.snapshot()) - counts['accepted']} failed POSTs during the outage"
            )
        assert all(p.process.poll() is None for p in procs.started), procs.logs()

    report(
        f"webhook receiver down {outage:.0f}s (refused on PostgreSQL, 503 on SQLite): every "
        f"event delivered in order {recovered:.1f}s after it came back; " + "; ".join(lines)
    )


def drive(dialer: HttpDialer, api: Api, tokens: list[str], per_user: int) -> dict[str, str]:
    """Open calls and take each through ringing → answered → hangup (four events)."""
    calls = {api.open_call(t, ANSWERS): ANSWERS for t in tokens for _ in range(per_user)}
    claimed = dialer.claim(len(calls))
    assert {c["token_call"] for c in claimed} == set(calls)
    for token_call in calls:
        for name in ("ringing", "answered", "hangup"):
            dialer.event(token_call, name)
    return calls


def test_worker_killed_mid_delivery(
    env: FaultEnv, lifecycle: LifecycleEnv, stacks: dict[str, Stack]
) -> None:
    tokens = lifecycle.user_tokens()
    client_id = env.web_client.client_id
    admin = lifecycle.admin_token()
    # The lease outlasts two timeouts (config.py insists); the kill comes well within one.
    settings = {"CALL_WEBHOOK_TIMEOUT": "1", "CALL_WEBHOOK_LEASE_SECONDS": "3"}
    used = [stacks[b] for b in BACKENDS]
    with receivers(*BACKENDS) as hooks, processes() as procs:
        apis = [Api(s.url, admin) for s in used]
        for api, hook in zip(apis, hooks, strict=True):
            hook.secret = api.set_webhook(client_id, hook.url)
            hook.hold_first = True
        # The first workers boot while the calls are made: the first POST either sends is
        # held open at the receiver, and the worker is killed in the middle of it (well
        # within its CALL_WEBHOOK_TIMEOUT) by a watcher thread per stack.
        doomed = [start_worker(procs, {**s.env, **settings}, f"doomed-{s.backend}") for s in used]

        def kill_when_held(hook: Receiver, worker: Proc) -> None:
            if hook.held.wait(30):
                worker.kill()
            hook.release.set()  # the receiver lets go of the dead connection

        with ThreadPoolExecutor(len(used)) as pool:
            watchers = [
                pool.submit(kill_when_held, hook, worker)
                for hook, worker in zip(hooks, doomed, strict=True)
            ]
            opened: list[dict[str, str]] = []
            for stack, api in zip(used, apis, strict=True):
                token = lifecycle.dialer_token()
                dialer = HttpDialer(stack.url, token, f"dialer-{stack.backend}")
                opened.append(drive(dialer, api, tokens, per_user=1))
                dialer.close()
            for watcher in watchers:
                watcher.result()
        for hook, worker in zip(hooks, doomed, strict=True):
            assert hook.held.is_set(), worker.log()
            assert worker.process.returncode == -signal.SIGKILL
        killed = time.monotonic()
        for stack in used:
            start_worker(procs, {**stack.env, **settings}, f"second-{stack.backend}")
        for stack in used:
            wait_for(f"{stack.backend}: all delivered", lambda s=stack: not undelivered(s), 30)
        recovered = time.monotonic() - killed

        lines = []
        for stack, api, hook, calls in zip(used, apis, hooks, opened, strict=True):
            events = {t: api.events(t) for t in calls}
            held = hook.held_delivery()
            assert held.event is not None and held.event["type"] == "call.queued"
            for token_call, number in calls.items():
                assert [e["type"] for e in events[token_call]] == EXPECTED_TYPES[number]
                for event in events[token_call]:
                    assert event["delivery"] == "delivered", event
                    # Killed before it could record: every attempt on file is the second's.
                    assert [a["worker"] for a in event["attempt_log"]] == [
                        f"second-{stack.backend}"
                    ], event["attempt_log"]
            counts = check_deliveries(hook.snapshot(), events, exactly_once=False)
            # The held event came again, with the same webhook-id and body.
            again = [d for d in hook.snapshot() if d.webhook_id == held.webhook_id]
            assert len(again) == 2 and again[1].ok and again[1].body == held.body
            lines.append(
                f"{stack.backend}: {counts['events']} events, {counts['repeats']} sent again "
                f"(the killed worker's batch, same webhook-id), {len(hook.aborted)} POST(s) "
                "cut short by the kill"
            )

    report(
        f"webhook worker kill -9 mid-POST: nothing lost, order kept, all delivered "
        f"{recovered:.1f}s after the kill (lease 3s); " + "; ".join(lines)
    )
