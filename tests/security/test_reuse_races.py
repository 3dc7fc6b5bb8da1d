"""Races in reuse detection (security round two, §4): one refresh token or one authorization
code presented many times at once.

Reuse detection (RFC 9700 §4.14.2 for refresh tokens, §4.2.4 for codes) revokes everything a
grant produced. Under concurrency the loser's revocation could run before the winner's new
token row was written, so the winner's tokens survived (and worked) while the losers were told
"every token of this grant is revoked".

The outcome this server guarantees, whatever the interleaving, is **everything revoked**:

- every response is a 200 or a 400 ``invalid_grant``, and there is **at most one** 200 (the
  winner, when it wrote its tokens before a loser revoked them; when a loser revoked first,
  the winner too is refused with ``invalid_grant`` and there is no 200 at all);
- every token of the grant — the raced one, whatever a 200 handed out, and every other token
  of the family — is revoked: introspection says ``{"active": false}``, a refresh with a
  handed-out refresh token is refused with ``invalid_grant``, and the database holds no
  unrevoked token of the user.

The first two tests race ``TRIALS`` times against a real auth server (gunicorn, 2 workers ×
8 threads), on PostgreSQL (READ COMMITTED) and on SQLite (``BEGIN IMMEDIATE``); the racers
are threads with one ``requests.Session`` each, released together by a barrier. Random
races seldom hit the worst interleaving of a code redemption on SQLite, so the tests after
them force it, in-process on both backends: the second use (or a revocation) runs to its
end after the first use has claimed the credential and before it saves its tokens.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import AUDIENCE, ISSUER, ClientInfo, Databases, Flow, UserInfo
from tests.e2e.servers import Server, auth_env, run_service

TRIALS = 10
REFRESH_RACERS = 10
CODE_RACERS = 8
TIMEOUT = 30


@dataclass
class ServerPool:
    stack: ExitStack
    servers: dict[str, Server] = field(default_factory=dict)


@pytest.fixture(scope="module")
def server_pool() -> Iterator[ServerPool]:
    """The module's auth servers by database URL; stopped, logs checked, at its end."""
    with ExitStack() as stack:
        pool = ServerPool(stack)
        yield pool
        for server in pool.servers.values():
            log = server.log()
            assert "Traceback" not in log, log[-4000:]


@pytest.fixture
def auth_server(auth_app, databases: Databases, keys_dir: Path, server_pool: ServerPool) -> Server:
    """The auth server under gunicorn (2 workers × 8 threads) on the test's (already emptied)
    auth database: one per backend for the whole module (it keeps no state of its own)."""
    if databases.auth_url not in server_pool.servers:
        env = auth_env(databases.auth_url, str(keys_dir), ISSUER, AUDIENCE)
        server_pool.servers[databases.auth_url] = server_pool.stack.enter_context(
            run_service("auth_server", env, workers=2, threads=8)
        )
    return server_pool.servers[databases.auth_url]


def race(n: int, send: Callable[[requests.Session], requests.Response]) -> list[requests.Response]:
    """``send`` on n threads, each with its own session, released at the same instant."""
    barrier = threading.Barrier(n)
    results: list[requests.Response | BaseException | None] = [None] * n

    def worker(i: int) -> None:
        with requests.Session() as session:
            try:
                barrier.wait(timeout=TIMEOUT)
                results[i] = send(session)
            except BaseException as exc:  # noqa: BLE001 - reported below
                results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT + 10)
    assert not any(t.is_alive() for t in threads), "requests still hanging"
    errors = [r for r in results if not isinstance(r, requests.Response)]
    assert not errors, errors[:3]
    return [r for r in results if isinstance(r, requests.Response)]


def body(r: requests.Response) -> dict[str, Any]:
    try:
        return dict(r.json())
    except ValueError:
        return {"raw": r.text[:300]}


def introspect(server: Server, app: ClientInfo, token: str) -> dict[str, Any]:
    r = requests.post(
        f"{server.url}/oauth/introspect",
        data={"token": token},
        headers=app.basic(),
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, r.text
    return body(r)


def refresh(server: Server, app: ClientInfo, token: str, http: Any = requests) -> requests.Response:
    return http.post(
        f"{server.url}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        headers=app.basic(),
        timeout=TIMEOUT,
    )


def db_count(db_url: str, sql: str, **params: Any) -> int:
    """One count, straight from the database the servers share."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql), params).scalar_one())
    finally:
        engine.dispose()


def last_token_id(db_url: str) -> int:
    return db_count(db_url, "SELECT coalesce(max(id), 0) FROM tokens")


def live_tokens(db_url: str, user_id: str, after_id: int) -> int:
    """The user's token rows written since ``after_id`` that are not revoked."""
    return db_count(
        db_url,
        "SELECT count(*) FROM tokens WHERE user_id = :u AND id > :after AND revoked_at IS NULL",
        u=user_id,
        after=after_id,
    )


def problems_after_race(
    server: Server,
    app: ClientInfo,
    responses: list[requests.Response],
    raced: dict[str, Any] | None,
    db_url: str,
    user_id: str,
    after_id: int,
) -> list[str]:
    """Everything that departs from the "everything revoked" outcome, as sentences.

    ``after_id``: the last token row before the trial began (earlier trials' rows are not
    this trial's business).
    """
    problems: list[str] = []
    live = live_tokens(db_url, user_id, after_id)
    if live:
        problems.append(f"{live} token row(s) of the user not revoked")
    statuses = Counter(r.status_code for r in responses)
    if set(statuses) - {200, 400}:
        problems.append(f"statuses {dict(statuses)}")
    if statuses[200] > 1:
        problems.append(f"{statuses[200]} responses were 200")
    refused = [body(r) for r in responses if r.status_code != 200]
    wrong = [b for b in refused if b.get("error") != "invalid_grant"]
    if wrong:
        problems.append(f"refusals other than invalid_grant: {wrong[:2]}")
    issued = [body(r) for r in responses if r.status_code == 200]
    if raced is not None:
        issued.append(raced)
    for tokens in issued:
        if introspect(server, app, tokens["access_token"]) != {"active": False}:
            problems.append("an access token from the race is still active")
        if introspect(server, app, tokens["refresh_token"]) != {"active": False}:
            problems.append("a refresh token from the race is still active")
    for tokens in issued:
        r = refresh(server, app, tokens["refresh_token"])
        if r.status_code != 400 or body(r).get("error") != "invalid_grant":
            problems.append(f"a refresh token from the race still refreshes: {r.status_code}")
    return problems


def assert_every_trial_consistent(failures: dict[int, list[str]]) -> None:
    assert not failures, (
        f"{len(failures)} of {TRIALS} trials left an inconsistent outcome: "
        + "; ".join(f"trial {t}: {', '.join(p)}" for t, p in failures.items())
    )


@pytest.mark.slow
def test_concurrent_refreshes_of_one_refresh_token_revoke_everything(
    auth_server: Server,
    databases: Databases,
    flow: Flow,
    user: UserInfo,
    web_client: ClientInfo,
) -> None:
    """10 trials of 10 simultaneous refreshes of one refresh token."""
    failures: dict[int, list[str]] = {}
    for trial in range(TRIALS):
        after_id = last_token_id(databases.auth_url)
        tokens = flow.token(user, web_client)
        responses = race(
            REFRESH_RACERS,
            lambda http, t=tokens: refresh(auth_server, web_client, t["refresh_token"], http),
        )
        problems = problems_after_race(
            auth_server, web_client, responses, tokens, databases.auth_url, user.id, after_id
        )
        if problems:
            failures[trial] = problems
    assert_every_trial_consistent(failures)


@pytest.mark.slow
def test_concurrent_redemptions_of_one_code_revoke_everything(
    auth_server: Server,
    databases: Databases,
    flow: Flow,
    user: UserInfo,
    web_client: ClientInfo,
) -> None:
    """10 trials of 8 simultaneous redemptions of one authorization code."""
    failures: dict[int, list[str]] = {}
    for trial in range(TRIALS):
        after_id = last_token_id(databases.auth_url)
        code = flow.authorize(user, web_client)["code"]
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": web_client.redirect_uris[0],
            "code_verifier": flow.verifier or "",
        }
        responses = race(
            CODE_RACERS,
            lambda http, d=data: http.post(
                f"{auth_server.url}/oauth/token",
                data=d,
                headers=web_client.basic(),
                timeout=TIMEOUT,
            ),
        )
        problems = problems_after_race(
            auth_server, web_client, responses, None, databases.auth_url, user.id, after_id
        )
        if problems:
            failures[trial] = problems
    assert_every_trial_consistent(failures)


# --- the worst interleaving, forced -------------------------------------------------------


def run_between_claim_and_save(
    monkeypatch: pytest.MonkeyPatch, grant: type, method: str, meanwhile: Callable[[], Any]
) -> list[Any]:
    """Make the first request that passes ``grant.method`` (the claim of its code or refresh
    token) stop right after it, while ``meanwhile()`` runs to its end on another thread, as
    another server process would. Returns a list that receives what ``meanwhile`` returned.
    """
    from auth_server.extensions import db

    original = getattr(grant, method)
    seen: list[Any] = []

    def claim_then_wait(self: Any, *args: Any) -> Any:
        claimed = original(self, *args)
        if not seen:
            seen.append("claimed")
            db.session.commit()  # the claim is committed; hold nothing the other one needs
            worker = threading.Thread(target=lambda: seen.append(meanwhile()), daemon=True)
            worker.start()
            worker.join(TIMEOUT)
            assert not worker.is_alive(), "the concurrent request hangs"
        return claimed

    monkeypatch.setattr(grant, method, claim_then_wait)
    return seen


def refresh_request(client: Any, app: ClientInfo, token: str) -> Any:
    return client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        headers=app.basic(),
    )


def code_request(client: Any, app: ClientInfo, code: str, verifier: str) -> Any:
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": app.redirect_uris[0],
            "code_verifier": verifier,
        },
        headers=app.basic(),
    )


def introspected(client: Any, app: ClientInfo, token: str) -> dict[str, Any]:
    r = client.post("/oauth/introspect", data={"token": token}, headers=app.basic())
    assert r.status_code == 200, r.get_data(as_text=True)
    return dict(r.json)


def unrevoked_tokens(auth_app: Any, user_id: str) -> int:
    from auth_server.extensions import db
    from auth_server.models import Token

    with auth_app.app_context():
        rows = db.session.scalars(
            sa.select(Token.id).where(Token.user_id == user_id, Token.revoked_at.is_(None))
        )
        return len(list(rows))


def test_refresh_reused_while_the_first_refresh_is_served_revokes_everything(
    monkeypatch, auth_app, client, flow, user, web_client
):
    from auth_server.oauth2 import RefreshTokenGrant

    tokens = flow.token(user, web_client)
    other = auth_app.test_client()
    seen = run_between_claim_and_save(
        monkeypatch,
        RefreshTokenGrant,
        "authenticate_refresh_token",
        lambda: refresh_request(other, web_client, tokens["refresh_token"]),
    )
    first = refresh_request(client, web_client, tokens["refresh_token"])

    reuse = seen[1]
    assert reuse.status_code == 400
    assert reuse.json == {
        "error": "invalid_grant",
        "error_description": (
            "The refresh token was already used; every token of this grant is revoked."
        ),
    }
    assert first.status_code == 400, first.json
    assert first.json == {
        "error": "invalid_grant",
        "error_description": (
            "The refresh token was used again, or revoked, while this request was being "
            "served; every token of this grant is revoked."
        ),
    }
    assert introspected(client, web_client, tokens["access_token"]) == {"active": False}
    assert unrevoked_tokens(auth_app, user.id) == 0


def test_refresh_token_revoked_while_being_refreshed_yields_no_live_token(
    monkeypatch, auth_app, client, flow, user, web_client
):
    """RFC 7009 revocation of the grant racing its refresh: nothing of the grant survives."""
    from auth_server.oauth2 import RefreshTokenGrant

    tokens = flow.token(user, web_client)
    other = auth_app.test_client()
    seen = run_between_claim_and_save(
        monkeypatch,
        RefreshTokenGrant,
        "authenticate_refresh_token",
        lambda: other.post(
            "/oauth/revoke",
            data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
            headers=web_client.basic(),
        ),
    )
    first = refresh_request(client, web_client, tokens["refresh_token"])

    assert seen[1].status_code == 200
    assert first.status_code == 400, first.json
    assert first.json["error"] == "invalid_grant"
    assert introspected(client, web_client, tokens["access_token"]) == {"active": False}
    assert unrevoked_tokens(auth_app, user.id) == 0


def test_code_replayed_while_the_first_redemption_is_served_revokes_everything(
    monkeypatch, auth_app, client, flow, user, web_client
):
    from auth_server.oauth2 import AuthorizationCodeGrant

    code = flow.authorize(user, web_client)["code"]
    verifier = flow.verifier or ""
    other = auth_app.test_client()
    seen = run_between_claim_and_save(
        monkeypatch,
        AuthorizationCodeGrant,
        "query_authorization_code",
        lambda: code_request(other, web_client, code, verifier),
    )
    first = code_request(client, web_client, code, verifier)

    replay = seen[1]
    assert replay.status_code == 400
    assert replay.json == {
        "error": "invalid_grant",
        "error_description": (
            "The authorization code was already used; a code can be redeemed only once, "
            "start a new authorization request."
        ),
    }
    assert first.status_code == 400, first.json
    assert first.json == {
        "error": "invalid_grant",
        "error_description": (
            "The authorization code was used twice at once; a code can be redeemed only "
            "once, and the tokens issued from it are revoked."
        ),
    }
    assert unrevoked_tokens(auth_app, user.id) == 0


def test_code_replay_revokes_the_tokens_refreshed_from_it(auth_app, client, flow, user, web_client):
    """RFC 9700 §4.2.4: what a replayed code produced includes the refreshes of its tokens
    (they are one grant), not only the first token response."""
    code = flow.authorize(user, web_client)["code"]
    verifier = flow.verifier or ""
    first = code_request(client, web_client, code, verifier)
    assert first.status_code == 200, first.json
    issued = [dict(first.json)]
    for _ in range(2):
        r = refresh_request(client, web_client, issued[-1]["refresh_token"])
        assert r.status_code == 200, r.json
        issued.append(dict(r.json))

    replay = code_request(client, web_client, code, verifier)
    assert replay.status_code == 400
    assert replay.json == {
        "error": "invalid_grant",
        "error_description": (
            "The authorization code was already used; the tokens issued from it are revoked."
        ),
    }
    for tokens in issued:
        assert introspected(client, web_client, tokens["access_token"]) == {"active": False}
        assert introspected(client, web_client, tokens["refresh_token"]) == {"active": False}
    latest = refresh_request(client, web_client, issued[-1]["refresh_token"])
    assert latest.status_code == 400 and latest.json["error"] == "invalid_grant"
    assert unrevoked_tokens(auth_app, user.id) == 0
