"""What one request costs, endpoint by endpoint: database round trips and CPU time.

    .venv/bin/python bench/request_cost.py                # table
    .venv/bin/python bench/request_cost.py --sql          # and the statements sent
    .venv/bin/python bench/request_cost.py --cprofile "PUT /rest/call"   # where the CPU goes

A profiling aid for `make bench` that stays meaningful on a busy machine: it runs each
benchmarked request in-process (Flask test clients, one thread, no HTTP server) against a
throwaway PostgreSQL database pair, first once with SQLAlchemy event hooks to count what
the request sends to PostgreSQL — pool pre-ping ``SELECT 1``s, ``BEGIN``s (psycopg2 sends
one before the first statement of a transaction), statements, ``COMMIT``s, ``ROLLBACK``s:
each one network round trip and, under load, one wake-up of a PostgreSQL backend — then
``--repeat`` times to measure the CPU time the process spends per request
(``time.thread_time``: the app's Python plus the driver, not PostgreSQL's side) and the
wall time, reporting medians. Under gunicorn a request costs somewhat more (HTTP parsing,
threads and GIL hand-offs); ``bench/run.py`` measures that as ``app_cpu_ms_per_req``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Like under gunicorn (deploy/gunicorn.conf.py): metrics in multi-process mode.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="clickcall-prom-"))

from sqlalchemy import event  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import bare_app  # noqa: E402
from bench import seed as seeding  # noqa: E402

AUTH_DB = "clickcall_bench_cost_auth"
CALLS_DB = "clickcall_bench_cost_calls"


class Tracer:
    def __init__(self, engine: Any) -> None:
        self.counts: Counter[str] = Counter()
        self.lines: list[str] = []
        self.enabled = False
        self.in_tx: set[int] = set()
        pre_ping = bool(getattr(engine.pool, "_pre_ping", False))

        @event.listens_for(engine.pool, "checkout")
        def _checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
            if pre_ping:
                self.add("ping", "SELECT 1  -- pool pre-ping")
            elif record.info.get("pinged"):  # shared.db.ping_after_idle (runs before this)
                self.add("ping", "SELECT 1  -- ping after idleness")

        @event.listens_for(engine, "before_cursor_execute")
        def _execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            key = id(conn.connection.dbapi_connection)
            autocommit = getattr(conn.connection.dbapi_connection, "autocommit", False)
            if key not in self.in_tx and not autocommit:  # shared.db.autocommit_read: none
                self.in_tx.add(key)
                self.add("begin", "BEGIN")
            self.add("statement", " ".join(statement.split())[:150])

        @event.listens_for(engine, "commit")
        def _commit(conn: Any) -> None:
            self.in_tx.discard(id(conn.connection.dbapi_connection))
            self.add("commit", "COMMIT")

        @event.listens_for(engine, "rollback")
        def _rollback(conn: Any) -> None:
            key = id(conn.connection.dbapi_connection)
            if key in self.in_tx:  # psycopg2 sends nothing when no transaction is open
                self.in_tx.discard(key)
                self.add("rollback", "ROLLBACK")

    def add(self, kind: str, text: str) -> None:
        if self.enabled:
            self.counts[kind] += 1
            self.lines.append(text)

    def start(self) -> None:
        self.counts.clear()
        self.lines.clear()
        self.enabled = True

    def summary(self) -> str:
        self.enabled = False
        parts = ", ".join(
            f"{self.counts[k]} {k}"
            for k in ("ping", "begin", "statement", "commit", "rollback")
            if self.counts[k]
        )
        return f"{sum(self.counts.values()):>3}  ({parts})"


Case = tuple[str, Tracer, Callable[[int], None]]


def build_cases(work: Path, auth_url: str, calls_url: str, repeat: int) -> list[Case]:
    from shared.keys import KeyStore, public_pem

    store = KeyStore(work / "keys")
    store.add("RS256")
    key = store.current()
    assert key is not None
    (work / "public.pem").write_bytes(public_pem(key.private_key))
    auth = seeding.auth_app(auth_url, work / "keys")
    api = seeding.call_app(calls_url, work / "public.pem")
    # The same call API with its revocation check on (a feed of REVOKED_ENTRIES entries,
    # read from the in-process auth server) and, for `api`, off: their call_get differ by
    # exactly the check. (No polling thread runs during the timed requests.)
    api_fed = seeding.call_app(calls_url, work / "public.pem")
    seeding.upgrade_auth(auth)
    seeding.upgrade_calls(api)
    # The access log still formats every line, as in production; it just goes nowhere.
    for handler in logging.getLogger("clickcall").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    seed = seeding.seed_auth(auth, 2, 0)
    user, limited = seed.readers
    with auth.app_context():
        auth_tracer = Tracer(auth.extensions["sqlalchemy"].engine)
    with api.app_context():
        call_tracer = Tracer(api.extensions["sqlalchemy"].engine)
    with api_fed.app_context():
        fed_tracer = Tracer(api_fed.extensions["sqlalchemy"].engine)
    ac = auth.test_client()
    cc = api.test_client()
    fc = api_fed.test_client()
    feed_cursor = fed_call_api(auth, api, api_fed)
    codes = seeding.mint_codes(auth, seed.web_client_id, [user.id], repeat + 10)
    tokens = seeding.mint_codes(auth, seed.web_client_id, [user.id, limited.id], 2)

    def exchange(code: str, verifier: str) -> str:
        r = ac.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": seeding.REDIRECT_URI,
                "code_verifier": verifier,
            },
            headers={"Authorization": "Basic " + seed.web_basic},
        )
        assert r.status_code == 200, r.get_data(as_text=True)
        return str(r.json["access_token"])  # type: ignore[index]

    bearer = {"Authorization": "Bearer " + exchange(*tokens[0])}
    limited_bearer = {"Authorization": "Bearer " + exchange(*tokens[1])}
    number = {"number": seeding.NUMBER}
    with api.app_context():
        from call_api import calls

        calls.set_limit(user.id, 10_000)
    first = cc.post("/rest/call", data=number, headers=bearer)
    assert first.status_code == 201, first.get_data(as_text=True)
    token_call = first.json["token_call"]  # type: ignore[index]
    for _ in range(2):
        assert cc.post("/rest/call", data=number, headers=limited_bearer).status_code == 201
    pending: list[str] = []

    def client_credentials(i: int) -> None:
        r = ac.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "admin"},
            headers={"Authorization": "Basic " + seed.admin_basic},
        )
        assert r.status_code == 200, r.get_data(as_text=True)

    def code_exchange(i: int) -> None:
        exchange(*codes[i])

    def jwks(i: int) -> None:
        assert ac.get("/.well-known/jwks.json").status_code == 200

    def call_get(i: int) -> None:
        r = cc.get(f"/rest/call?token_call={token_call}", headers=bearer)
        assert r.status_code == 200, r.get_data(as_text=True)

    def call_get_revocation_check(i: int) -> None:
        r = fc.get(f"/rest/call?token_call={token_call}", headers=bearer)
        assert r.status_code == 200, r.get_data(as_text=True)

    def feed_poll(i: int) -> None:
        r = ac.get(f"/oauth/revocations?after={feed_cursor}")
        assert r.status_code == 200 and not r.json["revocations"]  # type: ignore[index]

    def call_list(i: int) -> None:
        assert cc.get("/rest/call", headers=bearer).status_code == 200

    def post(i: int) -> None:
        r = cc.post("/rest/call", data=number, headers=bearer)
        assert r.status_code == 201, r.get_data(as_text=True)
        pending.append(r.json["token_call"])  # type: ignore[index]

    def put(i: int) -> None:
        r = cc.put("/rest/call", data={"token_call": pending.pop()}, headers=bearer)
        assert r.status_code == 200, r.get_data(as_text=True)

    def at_limit(i: int) -> None:
        r = cc.post("/rest/call", data=number, headers=limited_bearer)
        assert r.status_code == 409, r.get_data(as_text=True)

    bare = bare_app.create_app().test_client()
    floor = bound_read_app(calls_url, work / "public.pem").test_client()

    def ping(i: int) -> None:
        assert bare.get("/ping").status_code == 200

    def bound_read(i: int) -> None:
        r = floor.get(f"/rest/call?token_call={token_call}", headers=bearer)
        assert r.status_code == 200 and r.json["token_call"] == token_call, r.get_data()

    return [
        ("GET /ping (bare Flask)", call_tracer, ping),
        ("GET /rest/call?token_call=… (the bound)", call_tracer, bound_read),
        ("POST /oauth/token client_credentials", auth_tracer, client_credentials),
        ("POST /oauth/token authorization_code", auth_tracer, code_exchange),
        ("GET /.well-known/jwks.json", auth_tracer, jwks),
        ("GET /oauth/revocations?after=… (a poll)", auth_tracer, feed_poll),
        ("GET /rest/call?token_call=…", call_tracer, call_get),
        (f"  … revocation check on ({REVOKED_ENTRIES})", fed_tracer, call_get_revocation_check),
        ("GET /rest/call", call_tracer, call_list),
        ("POST /rest/call", call_tracer, post),
        ("PUT /rest/call", call_tracer, put),
        ("POST /rest/call at the limit (409)", call_tracer, at_limit),
    ]


def bound_read_app(calls_url: str, public_key_file: Path) -> Any:
    """Issue 14's bound for a read, as an app: bare Flask, plus PyJWT's check of the RS256
    token (signature, exp, aud, iss) and one indexed SELECT by token_call and subject on a
    kept psycopg2 connection, plus ``jsonify`` of the row. No SQLAlchemy, no request log,
    metrics, revocation feed, scope or XML: what the real endpoint adds is the difference."""
    import jwt
    import psycopg2
    from flask import Flask, jsonify, request
    from sqlalchemy.engine import make_url

    from shared.keys import load_public_key_pem

    url = make_url(calls_url)
    conn = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database
    )
    conn.autocommit = True
    key: Any = load_public_key_pem(public_key_file)
    app = Flask("bound")

    @app.get("/rest/call")
    def read() -> Any:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        claims = jwt.decode(
            token, key, algorithms=["RS256"], audience=seeding.AUDIENCE, issuer=seeding.ISSUER
        )
        with conn.cursor() as cur:
            cur.execute(
                "SELECT token_call, number, status, started_at, ended_at, client_id, subject "
                "FROM calls WHERE token_call = %s AND subject = %s",
                (request.args["token_call"], claims["sub"]),
            )
            row = cur.fetchone()
        names = ("token_call", "number", "status", "started_at", "ended_at", "client_id", "sub")
        return jsonify(
            {
                n: (v.isoformat() if hasattr(v, "isoformat") else v)
                for n, v in zip(names, row, strict=True)
            }
        )

    return app


# The revoked entries the "check on" case knows: a busy hour's worth, of every kind.
REVOKED_KINDS = {"jti": 1000, "grant": 200, "sub": 50, "client": 5}
REVOKED_ENTRIES = sum(REVOKED_KINDS.values())


def fed_call_api(auth: Any, api: Any, api_fed: Any) -> int:
    """Record REVOKED_KINDS entries at the auth server, turn ``api``'s revocation check off
    and give ``api_fed`` a feed read once from the auth server; returns the feed's cursor."""
    import uuid

    from auth_server import revocations
    from call_api.revocations import RevocationFeed

    with auth.app_context():
        for kind, count in REVOKED_KINDS.items():
            for _ in range(count):
                value = uuid.uuid4().hex
                if kind == "sub":
                    value = revocations.subject_hash(value)
                revocations.record(kind, value)
        auth.extensions["sqlalchemy"].session.commit()
    client = auth.test_client()

    def fetch(after: int) -> Any:
        return client.get(f"/oauth/revocations?after={after}").json

    api.extensions["clickcall_revocations"] = RevocationFeed(None, 0, 1)
    feed = RevocationFeed("in-process", 3600, 5, fetch=fetch)
    feed.start()  # its thread polls once, then sleeps for the hour
    assert len(feed.revoked) == REVOKED_ENTRIES, len(feed.revoked)
    api_fed.extensions["clickcall_revocations"] = feed
    _FED.append(feed)
    return feed.cursor


_FED: list[Any] = []  # the feed fed_call_api built, for revocation_check_cost


def revocation_check_cost() -> str:
    """The check alone, timed over many calls (a request's share is below the noise of
    the table): a user token's claims against every kind of entry, none matching."""
    import timeit
    import uuid

    [feed] = _FED
    claims = {
        "sub": str(uuid.uuid4()),
        "client_id": "bench-client",
        "jti": uuid.uuid4().hex,
        "grant_id": str(uuid.uuid4()),
        "iat": int(time.time()),
    }
    assert not feed.is_revoked(claims)
    runs = 200_000
    seconds = min(timeit.repeat(lambda: feed.is_revoked(claims), number=runs, repeat=5))
    return (
        f"revocation check alone: {seconds / runs * 1e6:.2f} µs CPU per request "
        f"({len(feed.revoked)} entries known; off: one attribute test)"
    )


class Backends:
    """CPU time of the PostgreSQL backends serving the benchmark's databases, read from
    ``/proc`` (PostgreSQL on this machine, readable by this user; else ``None``). In clock
    ticks (10 ms), so only a mean over many requests means anything."""

    def __init__(self, admin_url: str, databases: tuple[str, ...]) -> None:
        import sqlalchemy as sa

        from shared.db import normalise_url

        self.engine = sa.create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
        self.databases = databases
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float | None:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            pids = conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = ANY(:names)"),
                {"names": list(self.databases)},
            ).scalars()
            total = 0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                except OSError:
                    return None
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / self.tick


def selected(label: str, only: list[str] | None) -> bool:
    if not only:
        return True
    if label == "POST /rest/call" and selected("PUT /rest/call", only):
        return True
    return any(text in label for text in only)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sql", action="store_true", help="print the statements of each request")
    p.add_argument("--repeat", type=int, default=300, help="timed requests per endpoint")
    p.add_argument("--cprofile", metavar="ENDPOINT", help="cProfile the timed requests of one")
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="time only the requests whose label contains TEXT (repeatable; POST /rest/call "
        "runs whenever PUT /rest/call does, which ends its calls)",
    )
    p.add_argument(
        "--no-outbox",
        action="store_true",
        help="the call API with calls.record_event a no-op (as bench/no_outbox_app.py): "
        "against a normal run, what the outbox costs each transition",
    )
    a = p.parse_args()
    if a.no_outbox:
        from bench import no_outbox_app

        no_outbox_app.disable_outbox()
    work = Path(tempfile.mkdtemp(prefix="clickcall-cost-"))
    auth_url = seeding.recreate_database(a.postgres_url, AUTH_DB)
    calls_url = seeding.recreate_database(a.postgres_url, CALLS_DB)
    apps: list[Any] = []
    try:
        cases = build_cases(work, auth_url, calls_url, a.repeat + 1)
        backends = Backends(a.postgres_url, (AUTH_DB, CALLS_DB))
        print(
            f"{'request':<40} {'round trips':<44} {'CPU ms':>7} {'PG ms':>7} {'wall ms':>8}"
            "  (medians; PG: mean)"
        )
        for index, (label, tracer, run) in enumerate(cases):
            if not selected(label, a.only):
                continue
            tracer.start()
            run(0)  # traced once (the POST before the PUT: the PUT pops its call)
            trips = tracer.summary()
            lines = list(tracer.lines)
            if label == "POST /rest/call":  # leave one call per timed PUT
                for i in range(a.repeat):
                    run(i + 1)
            # thread_time: CPU, not the wall time spent waiting for PostgreSQL
            profiler = cProfile.Profile(time.thread_time) if a.cprofile == label else None
            if profiler:
                profiler.enable()
            cpu_ns: list[int] = []
            wall_ns: list[int] = []
            pg0 = backends.cpu_seconds()
            for i in range(a.repeat):
                cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
                run(i + 1 if label != "PUT /rest/call" else i)
                cpu_ns.append(time.thread_time_ns() - cpu0)
                wall_ns.append(time.perf_counter_ns() - wall0)
            pg1 = backends.cpu_seconds()
            pg = (pg1 - pg0) / a.repeat * 1e3 if pg0 is not None and pg1 is not None else None
            if profiler:
                profiler.disable()
            # Medians: on a busy machine the mean follows the neighbours, the median much less.
            cpu = statistics.median(cpu_ns) / 1e6
            wall = statistics.median(wall_ns) / 1e6
            pg_text = f"{pg:7.2f}" if pg is not None else f"{'–':>7}"
            print(f"{label:<40} {trips:<44} {cpu:7.2f} {pg_text} {wall:8.2f}")
            if a.sql:
                for line in lines:
                    print(f"      {line}")
            if profiler:
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats("cumulative").print_stats(45)
                stats.sort_stats("tottime").print_stats(30)
                print(out.getvalue())
            del index
        print(revocation_check_cost())
        apps = []
    finally:
        for app in apps:
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()
        seeding.drop_database(a.postgres_url, AUTH_DB)
        seeding.drop_database(a.postgres_url, CALLS_DB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
