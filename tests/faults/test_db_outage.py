"""PostgreSQL stops (cleanly, or crashes) while both services are under load.

Guarantees asserted:
- while it is down every request is answered (no dropped connection) with 503 and the JSON
  ``{"error": "service_unavailable", …}`` body — no 500, no traceback; before the outage
  and after recovery only 201s (call API) / 200s (auth server token endpoint);
- when it comes back both services serve again within a bound, with the same gunicorn
  workers (no restart);
- no lost and no phantom call: the calls table is exactly the set of token_calls handed out
  in 201s, counting the retries (same ``Idempotency-Key``) of the requests whose outcome
  the client could not know.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import FaultEnv, services
from tests.faults.load import (
    CallLoad,
    Outcome,
    Prober,
    assert_clean_error,
    assert_log_clean,
    assert_no_lost_no_phantom,
    count,
    histogram,
    report,
    scaled,
    settle,
    worker_pids,
)

pytestmark = pytest.mark.faults

RECOVERY_BOUND = 15.0  # seconds from "PostgreSQL accepts connections" to the first success


def first_success_after(outcomes: list[Outcome], ok: int, since: float) -> Outcome | None:
    after = [o for o in outcomes if o.status == ok and o.started >= since]
    return min(after, key=lambda o: o.finished) if after else None


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_outage_under_load(env: FaultEnv, mode: str) -> None:
    tokens = env.tokens()
    outage = scaled(2.5, 20.0)
    steady_needed = scaled(20, 400)
    with services(env.auth_server(), env.call_api(workers=2, threads=4)) as (auth, api):
        call_workers = worker_pids(api.process.pid, 2)
        auth_workers = worker_pids(auth.process.pid, 1)
        load = CallLoad(
            api.url,
            tokens,
            threads=4,
            max_requests=scaled(3000, 40000),
            time_limit=scaled(30, 180),
            pause=0.01,
        ).start()
        # client_credentials: a DB read plus a hashed-secret check (CPU), so not too often.
        token_probe = Prober(
            "auth-token",
            lambda s: s.post(
                f"{auth.url}/oauth/token",
                data={"grant_type": "client_credentials", "scope": "admin"},
                auth=(env.admin_client.client_id, env.admin_client.client_secret or ""),
                timeout=20,
            ),
            interval=0.2,
        ).start()
        try:
            assert load.wait_for(lambda o: count(o, 201) >= 20, 15)
            down_at = time.monotonic()
            env.cluster.stop(mode)
            stopped_at = time.monotonic()
            time.sleep(outage)
            restart_at = time.monotonic()
            env.cluster.start()
            up_at = time.monotonic()
            assert load.wait_for(lambda o: first_success_after(o, 201, up_at) is not None, 30)
            recovered = first_success_after(load.snapshot(), 201, up_at)
            assert recovered is not None
            steady_from = recovered.finished + 1.0
            assert load.wait_for(
                lambda o: sum(x.started >= steady_from for x in o) >= steady_needed, 30
            )
            assert token_probe_wait(token_probe, up_at)
        finally:
            outcomes = load.stop()
            auth_outcomes = token_probe.stop()

        # -- every request got an answer: a 201 or a clean 503
        no_answer = [o for o in outcomes if o.status is None]
        assert not no_answer, f"requests without an HTTP answer: {no_answer[:5]}"
        for o in outcomes:
            if o.status != 201:
                assert_clean_error(o, (503,))
        before = [o for o in outcomes if o.finished < down_at]
        assert before and all(o.status == 201 for o in before), histogram(before)
        during = [o for o in outcomes if stopped_at <= o.started and o.finished < restart_at]
        assert during and all(o.status == 503 for o in during), histogram(during)
        # Recovery: 201s again within the bound, and nothing but 201s one second later.
        recovery = recovered.finished - up_at
        assert recovery < RECOVERY_BOUND, recovery
        steady = [o for o in outcomes if o.started >= steady_from]
        assert all(o.status == 201 for o in steady), late_failures(steady, up_at)

        # -- the auth server: 200 or clean 503, back to 200 without restart
        for o in auth_outcomes:
            assert o.status in (200, 503), (o.status, o.error, o.body[:300])
            if o.status == 503:
                assert_clean_error(o, (503,))
        auth_during = [
            o for o in auth_outcomes if stopped_at <= o.started and o.finished < restart_at
        ]
        assert auth_during and all(o.status == 503 for o in auth_during)
        auth_recovered = first_success_after(auth_outcomes, 200, up_at)
        assert auth_recovered is not None, "auth server token endpoint did not recover"
        auth_recovery = auth_recovered.finished - up_at
        assert auth_recovery < RECOVERY_BOUND
        auth_steady = [o for o in auth_outcomes if o.started >= auth_recovered.finished + 1.0]
        assert all(o.status == 200 for o in auth_steady), late_failures(auth_steady, up_at)

        # Same workers: they recovered by themselves.
        assert worker_pids(api.process.pid, 2) == call_workers
        assert worker_pids(auth.process.pid, 1) == auth_workers

        # -- no lost, no phantom call
        settled = settle(api.url, tokens, outcomes)
        rows = assert_no_lost_no_phantom(env.calls_engine, settled)
        assert_log_clean(api.log(), "call_api")
        assert_log_clean(auth.log(), "auth_server")

    n503 = count(outcomes, 503)
    report(
        f"postgres stop -m {mode}: {len(outcomes)} POST /rest/call in "
        f"{outcomes[-1].finished - outcomes[0].started:.1f}s {histogram(outcomes)}; "
        f"down {up_at - down_at:.1f}s ({n503} x 503, max 503 latency "
        f"{max((o.elapsed for o in outcomes if o.status == 503), default=0):.2f}s); "
        f"call API recovered {recovery:.2f}s after PG was up, auth server {auth_recovery:.2f}s "
        f"(token endpoint {histogram(auth_outcomes)}); retried {settled.retried} unknown "
        f"outcomes ({settled.retry_found_existing} existed, {settled.retry_created} created), "
        f"{settled.replays_checked} replays; DB rows {rows} == 201s"
    )


def token_probe_wait(probe: Prober, up_at: float, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = first_success_after(probe.snapshot(), 200, up_at)
        if ok is not None and any(o.started >= ok.finished + 1.0 for o in probe.snapshot()):
            return True
        time.sleep(0.1)
    return False


def late_failures(outcomes: list[Outcome], since: float) -> list[str]:
    return [
        f"+{o.started - since:.2f}s {o.status} {o.error} {o.body[:200]}"
        for o in outcomes
        if o.status not in (200, 201)
    ][:10]
