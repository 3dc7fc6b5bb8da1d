"""A gunicorn worker of the call API is killed (``kill -9``) in the middle of the load.

Guarantees asserted:
- gunicorn replaces it (the master keeps its worker count, with a new pid) and the new
  worker serves: after every original worker has been killed once, requests still get 201;
- only requests in flight on the killed worker lose their answer (at most one per client
  thread per kill); no other request fails and no answer is a 5xx;
- no lost and no phantom call (as for the database outage): a call whose answer died with
  the worker either exists and is returned by the retry with the same Idempotency-Key, or
  does not exist and is created by it — never both, never twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import FaultEnv, services
from tests.faults.load import (
    CallLoad,
    Outcome,
    assert_clean_error,
    assert_no_lost_no_phantom,
    children,
    count,
    histogram,
    report,
    scaled,
    settle,
    worker_pids,
)

pytestmark = pytest.mark.faults

WORKERS = 2
THREADS = 6  # client threads


def start_time(pid: int) -> int:
    """Process start time (clock ticks since boot), field 22 of /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


def fresh_successes(since: float, n: int) -> Callable[[list[Outcome]], bool]:
    return lambda outcomes: sum(o.status == 201 and o.started > since for o in outcomes) >= n


def test_worker_killed_mid_load(env: FaultEnv) -> None:
    tokens = env.tokens()
    kills = scaled(2, 8)
    with services(env.call_api(workers=WORKERS, threads=4)) as (api,):
        master = api.process.pid
        original = worker_pids(master, WORKERS)
        load = CallLoad(
            api.url,
            tokens,
            threads=THREADS,
            max_requests=scaled(3000, 30000),
            time_limit=scaled(40, 240),
            pause=0.005,
        ).start()
        replaced: list[float] = []
        victims: list[int] = []
        try:
            assert load.wait_for(lambda o: count(o, 201) >= 30, 15)
            for _ in range(kills):
                # The oldest worker: after WORKERS kills, none of the original ones is left.
                victim = min(worker_pids(master, WORKERS), key=start_time)
                in_flight_before = len(load.snapshot())
                killed_at = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                victims.append(victim)
                deadline = killed_at + 30
                while True:
                    pids = children(master)
                    if len(pids) == WORKERS and victim not in pids:
                        break
                    assert time.monotonic() < deadline, f"worker {victim} not replaced: {pids}"
                    time.sleep(0.05)
                replaced.append(time.monotonic() - killed_at)
                # Keep going until fresh 201s arrive from requests sent after the replacement.
                since = time.monotonic()
                assert load.wait_for(fresh_successes(since, 30), 20), histogram(
                    load.snapshot()[in_flight_before:]
                )
        finally:
            outcomes = load.stop()
        final = worker_pids(master, WORKERS)
        assert api.process.poll() is None, "the gunicorn master died"
        if kills >= WORKERS:
            assert not set(final) & set(original), (original, final)

        lost_answers = [o for o in outcomes if o.status is None]
        for o in outcomes:
            if o.status is not None and o.status != 201:
                assert_clean_error(o, (503,))  # would be a bug, but at least a clean one
        assert count(outcomes, 503) == 0, histogram(outcomes)
        assert len(lost_answers) <= THREADS * kills, histogram(outcomes)
        settled = settle(api.url, tokens, outcomes)
        rows = assert_no_lost_no_phantom(env.calls_engine, settled)
        log = api.log()
        assert log.count("was sent SIGKILL") >= kills or log.count("SIGKILL") >= kills
        assert '"status": 500' not in log and '"unhandled error"' not in log

    report(
        f"worker kill -9 x{kills} (workers {original} -> {final}): {len(outcomes)} POSTs "
        f"{histogram(outcomes)}; replacement took "
        f"{', '.join(f'{t:.2f}s' for t in replaced)}; {len(lost_answers)} answers lost with "
        f"the worker, retried with the same key: {settled.retry_found_existing} had been "
        f"created, {settled.retry_created} had not; {settled.replays_checked} replays; "
        f"DB rows {rows} == 201s"
    )
