"""The ongoing-call limit and idempotency under real concurrency.

Two call-API processes (gunicorn, one worker, 16 threads each) share the test's calls
database; dozens of threads released together by a ``threading.Barrier`` fire
``POST /rest/call`` at both. The limit must hold exactly: as many 201s as the limit allows,
every other answer a 409 ``max_calls_exceeded``, and the database holds exactly ``limit``
ongoing calls. The same with two client apps of one user, on SQLite (``BEGIN IMMEDIATE``),
and for concurrent retries carrying one ``Idempotency-Key``.

``limit_scenario`` runs a whole race and checks it, so it can be looped (see
``test_postgres_limit_holds_round_after_round``).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import AUDIENCE, ISSUER, make_client
from tests.e2e.servers import Server, call_env, run_service

pytestmark = pytest.mark.slow

NUMBER = "+14155550123"
LIMIT = 3
RACERS = 64
TIMEOUT = 60


# ---------------------------------------------------------------- helpers


@dataclass
class Outcome:
    index: int
    server: str
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def fire_together(
    n: int, send: Callable[[int], requests.Response], servers: Sequence[Server]
) -> list[Outcome]:
    """Run ``send(i)`` for i in 0..n-1 on n threads released at the same instant."""
    barrier = threading.Barrier(n)
    results: list[Outcome | BaseException | None] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            r = send(i)
            try:
                body = r.json()
            except ValueError:
                body = {"raw": r.text[:500]}
            results[i] = Outcome(
                i, servers[i % len(servers)].url, r.status_code, body, dict(r.headers)
            )
        except BaseException as exc:  # noqa: BLE001 - reported below, not lost in a thread
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT + 30)
    assert not any(t.is_alive() for t in threads), "requests still hanging"
    errors = [r for r in results if not isinstance(r, Outcome)]
    assert not errors, errors[:3]
    return [r for r in results if isinstance(r, Outcome)]


def post_call(
    server: Server, token: str, headers: dict[str, str] | None = None, number: str = NUMBER
) -> requests.Response:
    return requests.post(
        f"{server.url}/rest/call",
        data={"number": number},
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
        timeout=TIMEOUT,
    )


def db_rows(db_url: str, subject: str) -> list[dict[str, Any]]:
    """The subject's calls, read straight from the database the servers share."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = (
                conn.execute(
                    sa.text(
                        "SELECT token_call, client_id, status, idempotency_key FROM calls "
                        "WHERE subject = :s ORDER BY id"
                    ),
                    {"s": subject},
                )
                .mappings()
                .all()
            )
            return [dict(r) for r in rows]
    finally:
        engine.dispose()


def assert_clean_logs(servers: Sequence[Server]) -> None:
    for server in servers:
        log = server.log()
        assert "Traceback" not in log and "unhandled error" not in log, log[-4000:]


def race_for_limit(servers: Sequence[Server], tokens: Sequence[str], n: int) -> list[Outcome]:
    """n simultaneous starts, request i to server i % S with token (i // S) % T."""

    def send(i: int) -> requests.Response:
        token = tokens[(i // len(servers)) % len(tokens)]
        return post_call(servers[i % len(servers)], token)

    return fire_together(n, send, servers)


def assert_exactly_limit(
    outcomes: Sequence[Outcome], limit: int, db_url: str, subject: str
) -> list[Outcome]:
    statuses = Counter(o.status for o in outcomes)
    assert statuses == Counter({201: limit, 409: len(outcomes) - limit}), statuses
    refused = [o for o in outcomes if o.status == 409]
    assert all(o.body.get("error") == "max_calls_exceeded" for o in refused), refused[:3]
    assert all(o.body.get("max_ongoing") == limit for o in refused), refused[:3]
    created = [o for o in outcomes if o.status == 201]
    tokens_created = {o.body["token_call"] for o in created}
    assert len(tokens_created) == limit
    assert all(o.body["subject"] == subject and o.body["status"] == "ongoing" for o in created)
    rows = db_rows(db_url, subject)
    ongoing = [r for r in rows if r["status"] == "ongoing"]
    assert len(ongoing) == limit, rows
    assert {r["token_call"] for r in ongoing} == tokens_created
    return created


def limit_scenario(
    servers: Sequence[Server],
    tokens: Sequence[str],
    limit: int,
    db_url: str,
    subject: str,
    n: int = RACERS,
) -> list[Outcome]:
    """A whole race: fire n simultaneous starts, check that exactly ``limit`` got through."""
    assert not [r for r in db_rows(db_url, subject) if r["status"] == "ongoing"]
    outcomes = race_for_limit(servers, tokens, n)
    return assert_exactly_limit(outcomes, limit, db_url, subject)


def end_all(
    servers: Sequence[Server], token_by_client: dict[str, str], created: Sequence[Outcome]
) -> None:
    for i, o in enumerate(created):
        server = servers[i % len(servers)]
        token = token_by_client[o.body["client_id"]]
        r = requests.put(
            f"{server.url}/rest/call",
            data={"token_call": o.body["token_call"]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT,
        )
        assert r.status_code == 200 and r.json()["status"] == "ended", r.text


def set_limit(call_app: Any, subject: str, limit: int) -> None:
    """``call-api limits set SUBJECT N`` through the real CLI, on the test's database."""
    from call_api.cli import main

    result = call_app.test_cli_runner().invoke(main, ["limits", "set", subject, str(limit)])
    assert result.exit_code == 0, result.output
    assert f'"max_ongoing": {limit}' in result.output


@pytest.fixture
def postgres_only(databases) -> None:
    """Listed first, so the sqlite param skips before any server is started."""
    if databases.backend != "postgresql":
        pytest.skip("this race is the PostgreSQL variant")


@pytest.fixture
def sqlite_only(databases) -> None:
    if databases.backend != "sqlite":
        pytest.skip("this race is the SQLite variant")


@pytest.fixture
def call_servers(call_app, databases, public_key_file) -> Iterator[list[Server]]:
    """Two call-API processes on the test's (already emptied) calls database."""
    env = call_env(databases.calls_url, ISSUER, AUDIENCE, public_key_file=str(public_key_file))
    with ExitStack() as stack:
        servers = [
            stack.enter_context(run_service("call_api", env, workers=1, threads=16))
            for _ in range(2)
        ]
        yield servers
        assert_clean_logs(servers)


@pytest.fixture
def second_token(auth_app, flow, user) -> tuple[str, str]:
    """A token for the same user from a second client app: (client_id, token)."""
    other = make_client(auth_app, "Second app")
    return other.client_id, str(flow.token(user, other)["access_token"])


def client_of(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["client_id"])


# ---------------------------------------------------------------- PostgreSQL


def test_postgres_limit_holds_across_two_processes(
    postgres_only, databases, call_app, user, user_token, call_servers
):
    set_limit(call_app, user.id, LIMIT)
    limit_scenario(call_servers, [user_token], LIMIT, databases.calls_url, user.id)


def test_postgres_limit_holds_across_two_apps_of_one_user(
    postgres_only, databases, call_app, user, user_token, second_token, call_servers
):
    set_limit(call_app, user.id, LIMIT)
    created = limit_scenario(
        call_servers, [user_token, second_token[1]], LIMIT, databases.calls_url, user.id
    )
    # both apps really took part, and the 409s came from both apps and both processes
    assert client_of(user_token) != second_token[0]
    rows = db_rows(databases.calls_url, user.id)
    assert {r["client_id"] for r in rows} <= {client_of(user_token), second_token[0]}
    assert len(created) == LIMIT


def test_postgres_limit_holds_round_after_round(
    postgres_only, databases, call_app, user, user_token, second_token, call_servers
):
    """The scenario five times on the same servers, ending every call between rounds."""
    set_limit(call_app, user.id, LIMIT)
    by_client = {client_of(user_token): user_token, second_token[0]: second_token[1]}
    for _ in range(5):
        created = limit_scenario(
            call_servers, list(by_client.values()), LIMIT, databases.calls_url, user.id, n=40
        )
        end_all(call_servers, by_client, created)
    rows = db_rows(databases.calls_url, user.id)
    assert len(rows) == 5 * LIMIT and all(r["status"] == "ended" for r in rows)


def test_postgres_limit_holds_while_calls_end_concurrently(
    postgres_only, databases, call_app, user, user_token, call_servers
):
    """Starts racing with hang-ups: whatever interleaving, never above the limit."""
    set_limit(call_app, user.id, LIMIT)
    first = limit_scenario(call_servers, [user_token], LIMIT, databases.calls_url, user.id)
    to_end = [o.body["token_call"] for o in first]

    def send(i: int) -> requests.Response:
        server = call_servers[i % 2]
        if i < len(to_end):
            return requests.put(
                f"{server.url}/rest/call",
                data={"token_call": to_end[i]},
                headers={"Authorization": f"Bearer {user_token}"},
                timeout=TIMEOUT,
            )
        return post_call(server, user_token)

    outcomes = fire_together(40, send, call_servers)
    ends, starts = outcomes[: len(to_end)], outcomes[len(to_end) :]
    assert all(o.status == 200 for o in ends), ends
    assert {o.status for o in starts} <= {201, 409}
    started = sum(o.status == 201 for o in starts)
    assert started <= LIMIT  # however starts and hang-ups interleave
    ongoing = [r for r in db_rows(databases.calls_url, user.id) if r["status"] == "ongoing"]
    assert len(ongoing) == started <= LIMIT


# ---------------------------------------------------------------- SQLite (the dev default)


def test_sqlite_limit_holds_across_two_processes(
    sqlite_only, databases, call_app, user, user_token, call_servers
):
    set_limit(call_app, user.id, LIMIT)
    limit_scenario(call_servers, [user_token], LIMIT, databases.calls_url, user.id)


def test_sqlite_limit_holds_across_two_apps_of_one_user(
    sqlite_only, databases, call_app, user, user_token, second_token, call_servers
):
    set_limit(call_app, user.id, LIMIT)
    limit_scenario(call_servers, [user_token, second_token[1]], LIMIT, databases.calls_url, user.id)


# ---------------------------------------------------------------- idempotency (both backends)


def test_idempotent_retries_under_concurrency_make_one_call(
    databases, call_app, user, user_token, call_servers
):
    key = "retry-7f3a9c"
    outcomes = fire_together(
        30,
        lambda i: post_call(call_servers[i % 2], user_token, {"Idempotency-Key": key}),
        call_servers,
    )
    assert Counter(o.status for o in outcomes) == Counter({201: 30}), [
        (o.status, o.body) for o in outcomes if o.status != 201
    ][:3]
    assert len({o.body["token_call"] for o in outcomes}) == 1
    assert len({o.headers["Location"] for o in outcomes}) == 1
    replayed = [o for o in outcomes if o.headers.get("Idempotent-Replayed") == "true"]
    assert len(replayed) == 29
    assert {o.server for o in outcomes} == {s.url for s in call_servers}
    rows = db_rows(databases.calls_url, user.id)
    assert len(rows) == 1, rows
    assert rows[0]["token_call"] == outcomes[0].body["token_call"]
    assert rows[0]["idempotency_key"] == key and rows[0]["status"] == "ongoing"


def test_idempotent_retries_race_other_starts_at_the_limit(
    databases, call_app, user, user_token, call_servers
):
    """Retries of one key (one slot) racing plain starts: still exactly ``LIMIT`` calls."""
    set_limit(call_app, user.id, LIMIT)
    key = "retry-at-the-limit"

    def send(i: int) -> requests.Response:
        headers = {"Idempotency-Key": key} if i % 3 == 0 else {}
        return post_call(call_servers[i % 2], user_token, headers)

    outcomes = fire_together(45, send, call_servers)
    keyed = [o for o in outcomes if o.index % 3 == 0]
    plain = [o for o in outcomes if o.index % 3 != 0]
    assert {o.status for o in outcomes} <= {201, 409}
    rows = db_rows(databases.calls_url, user.id)
    assert len(rows) == LIMIT and all(r["status"] == "ongoing" for r in rows), rows
    keyed_rows = [r for r in rows if r["idempotency_key"] == key]
    assert len(keyed_rows) <= 1
    if keyed_rows:
        # The key won a slot. The count only grows, so no keyed request can have met a full
        # house before that: every keyed request is a 201 naming that one call.
        assert all(o.status == 201 for o in keyed), [(o.status, o.body) for o in keyed]
        assert {o.body["token_call"] for o in keyed} == {keyed_rows[0]["token_call"]}
    else:
        assert all(o.status == 409 for o in keyed)
    plain_created = {o.body["token_call"] for o in plain if o.status == 201}
    assert len(plain_created) + len(keyed_rows) == LIMIT
