"""A/B of the call API's only performance fix so far (docs/PERFORMANCE.md, "App fixes").

    .venv/bin/python bench/ab_expire_on_commit.py [--rounds 8] [--pairs 100]

``call_api.calls`` commits ``start_call``/``end_call`` with ``_commit_keeping_values``
(no ``expire_on_commit``). "before" swaps in the previous plain ``db.session.commit()``
for the same code, so both variants run in one process, interleaved round by round (a
busy machine drifts; interleaving spreads the drift over both). Each round times
``--pairs`` POST+PUT pairs per variant through the Flask test client against PostgreSQL and
reports, per pair: database round trips, median CPU time (``time.thread_time``) and
median wall time.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="clickcall-prom-"))

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import seed as seeding  # noqa: E402
from bench.request_cost import Tracer  # noqa: E402

DB = "clickcall_bench_ab_calls"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    a = p.parse_args()
    import jwt

    from call_api import calls
    from call_api.extensions import db
    from shared.keys import KeyStore, public_pem

    work = Path(tempfile.mkdtemp(prefix="clickcall-ab-"))
    url = seeding.recreate_database(a.postgres_url, DB)
    try:
        store = KeyStore(work / "keys")
        store.add("RS256")
        key = store.current()
        assert key is not None
        (work / "public.pem").write_bytes(public_pem(key.private_key))
        app = seeding.call_app(url, work / "public.pem")
        seeding.upgrade_calls(app)
        for handler in logging.getLogger("clickcall").handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
        now = int(time.time())
        token = jwt.encode(
            {
                "iss": seeding.ISSUER,
                "aud": seeding.AUDIENCE,
                "sub": "ab-user",
                "client_id": "ab-client",
                "scope": "call",
                "iat": now,
                "exp": now + 3600,
                "jti": "ab",
                "username": "ab-user",  # a person's token: /rest/call refuses client tokens
            },
            key.private_key,
            algorithm="RS256",
            headers={"typ": "at+jwt", "kid": key.kid},
        )
        headers = {"Authorization": "Bearer " + token}
        client = app.test_client()
        with app.app_context():
            tracer = Tracer(db.engine)

        fixed = calls._commit_keeping_values

        def plain_commit() -> None:
            db.session.commit()

        def pair() -> None:
            r = client.post("/rest/call", data={"number": seeding.NUMBER}, headers=headers)
            assert r.status_code == 201, r.get_data(as_text=True)
            token_call = r.json["token_call"]  # type: ignore[index]
            r = client.put("/rest/call", data={"token_call": token_call}, headers=headers)
            assert r.status_code == 200, r.get_data(as_text=True)

        variants = {"before (expire_on_commit)": plain_commit, "after (values kept)": fixed}
        cpu: dict[str, list[int]] = {k: [] for k in variants}
        wall: dict[str, list[int]] = {k: [] for k in variants}
        trips: dict[str, int] = {}
        for name, commit in variants.items():
            calls._commit_keeping_values = commit  # type: ignore[assignment]
            for _ in range(5):
                pair()
            tracer.start()
            pair()
            tracer.summary()
            trips[name] = sum(tracer.counts.values())
        for round_no in range(a.rounds):
            order = list(variants.items())
            if round_no % 2:
                order.reverse()
            for name, commit in order:
                calls._commit_keeping_values = commit  # type: ignore[assignment]
                for _ in range(a.pairs):
                    c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
                    pair()
                    cpu[name].append(time.thread_time_ns() - c0)
                    wall[name].append(time.perf_counter_ns() - w0)
        calls._commit_keeping_values = fixed  # type: ignore[assignment]
        print(f"{a.rounds} rounds × {a.pairs} POST+PUT pairs per variant, interleaved")
        print(f"{'variant':<28} {'round trips':>11} {'CPU ms':>8} {'wall ms':>8}  (per pair)")
        for name in variants:
            print(
                f"{name:<28} {trips[name]:>11} {statistics.median(cpu[name]) / 1e6:8.2f} "
                f"{statistics.median(wall[name]) / 1e6:8.2f}"
            )
        with app.app_context():
            db.engine.dispose()
    finally:
        seeding.drop_database(a.postgres_url, DB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
