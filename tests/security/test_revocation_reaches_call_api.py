"""Attack: keep using a token after it was revoked.

Before: the call API checked JWTs with the public key alone, so an access token revoked at
``/oauth/revoke`` — or whose refresh token was revoked or reused, whose code was replayed,
whose user was disabled, whose app's consent was withdrawn or whose client was deleted —
kept working there until it expired (up to an hour).

A worker started while the auth server is unreachable knows no revocation until the feed
answers again (each process keeps its own copy; see call_api/revocations.py).

Now the auth server publishes a revocation feed and every call API worker polls it
(call_api/revocations.py). Both services run here as real gunicorn processes (the call
API with two workers, each polling on its own) on SQLite and PostgreSQL, with the default
poll interval: each revoked token must be refused within 5 seconds, and nothing else
may be. With the auth server stopped, the call API keeps serving on what it last knew and
``/readyz`` says how stale that is.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import AUDIENCE, ClientInfo, Flow, auth_config, bearer, make_client, make_user
from tests.e2e.servers import Server, auth_env, call_env, free_port, run_service

pytestmark = pytest.mark.slow  # real gunicorn processes

LIMIT = 5.0  # seconds: the promise
PROBE_EVERY = 0.2
STREAK = 4  # refusals in a row that make a token refused for good
POLL_INTERVAL = 2.0  # the call API's default CALL_REVOCATION_POLL_INTERVAL
REVOKED = {"error": "invalid_token", "error_description": "The access token has been revoked."}
# Filled by the tests, printed with -s: the measured delays, for docs and reports.
DELAYS: list[str] = []


def status_of(api: Server, token: str) -> requests.Response:
    # A new connection each time, so requests reach both workers of the call API.
    return requests.get(
        f"{api.url}/rest/call",
        headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        timeout=10,
    )


def wait_refused(api: Server, tokens: dict[str, str], since: float) -> dict[str, float]:
    """Probe every PROBE_EVERY s until each token is refused as revoked for good; the delays.

    Each worker keeps its own copy of the feed, so one refusal proves little: a token counts
    as refused once it has been refused STREAK times in a row, with every worker's next poll
    since ``since`` behind it; its delay is when that final run of refusals began.
    """
    refused_since: dict[str, float | None] = dict.fromkeys(tokens)
    streak = dict.fromkeys(tokens, 0)
    settled = POLL_INTERVAL + 1.0  # by then every worker has polled after the revocation
    while time.monotonic() - since < LIMIT + 1:
        for name, token in tokens.items():
            r = status_of(api, token)
            if r.status_code == 401:
                assert r.json() == REVOKED, (name, r.text)
                if refused_since[name] is None:
                    refused_since[name] = time.monotonic() - since
                streak[name] += 1
            else:
                assert r.status_code == 200, (name, r.status_code, r.text)
                refused_since[name], streak[name] = None, 0
        if time.monotonic() - since >= settled and all(n >= STREAK for n in streak.values()):
            break
        time.sleep(PROBE_EVERY)
    delays = {n: d for n, d in refused_since.items() if d is not None and streak[n] >= STREAK}
    late = {n: round(d, 2) for n, d in delays.items() if d >= LIMIT}
    missing = sorted(set(tokens) - set(delays))
    assert not missing and not late, f"still accepted after {LIMIT} s: {missing or late}"
    return delays


def readyz(api: Server, session: requests.Session) -> dict:
    r = session.get(f"{api.url}/readyz", timeout=10)
    assert r.status_code == 200, r.text  # a stale feed is reported, never a 503
    return dict(r.json())


def assert_all_workers_refuse(api: Server, tokens: dict[str, str]) -> None:
    """Once refused, refused by every worker (each keeps its own copy of the feed)."""
    for _ in range(3):
        for name, token in tokens.items():
            r = status_of(api, token)
            assert (r.status_code, r.json()) == (401, REVOKED), (name, r.text)


def test_revoked_tokens_stop_at_the_call_api_within_5_seconds(
    databases, keys_dir, public_key_file, call_app, auth_app
):
    """Eight ways to revoke, each refused within 5 s by both call API workers; the tokens
    next to them still work. Then the auth server stops: the call API keeps serving on what
    it knew (the revoked ones stay refused) and /readyz stays 200, its staleness growing."""
    from auth_server import create_app
    from auth_server.accounts import disable_user
    from auth_server.clients import delete_client
    from auth_server.consent import forget_consent

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    # Mints tokens in-process with the real server's issuer, on the same database.
    minter = create_app(auth_config(databases, keys_dir, AUTH_ISSUER=issuer))
    app = make_client(minter, "Web app", grant_types=("authorization_code", "refresh_token"))
    doomed_app = make_client(minter, "Doomed app")
    names = ("ann", "ben", "cat", "dan", "eve", "fay", "gil", "hal")
    users = {n: make_user(minter, n, f"{n}-password") for n in names}

    def mint(user: str, client: ClientInfo = app) -> dict:
        return Flow(minter.test_client()).token(users[user], client)

    # A PEM key (CALL_PUBLIC_KEY_FILE): the call API needs the auth server only for the
    # feed, at its default URL ($AUTH_ISSUER/oauth/revocations).
    api_env = call_env(databases.calls_url, issuer, AUDIENCE, public_key_file=str(public_key_file))
    auth_cm = run_service(
        "auth_server", auth_env(databases.auth_url, str(keys_dir), issuer, AUDIENCE), port=port
    )
    try:
        with (
            run_service("call_api", api_env, workers=2, threads=4) as api,
            requests.Session() as one,
        ):
            with auth_cm as auth:

                def revoke(token: str) -> None:
                    r = requests.post(
                        f"{auth.url}/oauth/revoke",
                        data={"token": token},
                        auth=(app.client_id, app.client_secret),
                        timeout=10,
                    )
                    assert r.status_code == 200, r.text

                def token_endpoint(**data: str) -> requests.Response:
                    return requests.post(
                        f"{auth.url}/oauth/token",
                        data=data,
                        auth=(app.client_id, app.client_secret),
                        timeout=10,
                    )

                def refreshed(issued: dict) -> dict:
                    r = token_endpoint(
                        grant_type="refresh_token", refresh_token=issued["refresh_token"]
                    )
                    assert r.status_code == 200, r.text
                    return dict(r.json())

                ann, ann_other = mint("ann"), mint("ann")
                ben = mint("ben")
                ben_refreshed = refreshed(ben)
                cat, dan, eve = mint("cat"), mint("dan"), mint("eve")
                fay = mint("fay", doomed_app)
                gil = mint("gil")
                gil_refreshed = refreshed(gil)
                hal_flow = Flow(minter.test_client())
                code = hal_flow.authorize(users["hal"], app)["code"]
                redeem = {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": app.redirect_uris[0],
                    "code_verifier": hal_flow.verifier or "",
                }
                r = token_endpoint(**redeem)
                assert r.status_code == 200, r.text
                hal = r.json()
                doomed = {
                    "access token revoked": ann["access_token"],
                    "refresh token revoked: the grant's first access token": ben["access_token"],
                    "refresh token revoked: the grant's refreshed access token": ben_refreshed[
                        "access_token"
                    ],
                    "user disabled": cat["access_token"],
                    "consent withdrawn": dan["access_token"],
                    "client deleted": fay["access_token"],
                    "refresh token reused: the thief's access token": gil_refreshed["access_token"],
                    "code replayed: the first redemption's access token": hal["access_token"],
                }
                kept = {
                    "same user, other grant": ann_other["access_token"],
                    "bystander": eve["access_token"],
                }
                for name, token in {**doomed, **kept}.items():
                    assert status_of(api, token).status_code == 200, name

                revoke(ann["access_token"])
                revoke(ben_refreshed["refresh_token"])
                r = token_endpoint(grant_type="refresh_token", refresh_token=gil["refresh_token"])
                assert r.status_code == 400, r.text  # reuse: the family is revoked
                r = token_endpoint(**redeem)
                assert r.status_code == 400, r.text  # replay: what the code gave is revoked
                with minter.app_context():  # what `auth-server users disable` and others run
                    disable_user("cat")
                    forget_consent(users["dan"].id, app.client_id)
                    delete_client(doomed_app.client_id)
                delays = wait_refused(api, doomed, time.monotonic())
                assert_all_workers_refuse(api, doomed)
                for name, token in kept.items():
                    assert status_of(api, token).status_code == 200, name
                DELAYS.extend(f"{databases.backend}: {n}: {d:.2f} s" for n, d in delays.items())
                print(
                    "\nrevoked → refused at the call API after:",
                    *DELAYS[-len(delays) :],
                    sep="\n  ",
                )
                feed = readyz(api, one)["revocations"]
                assert feed["status"] == "ok", feed
                # jti, sub, client, and the grants of ben, cat, dan, gil and hal:
                assert feed["entries"] == 8, feed

            # -- the auth server is gone. `one` keeps its connection, so one worker answers.
            ages = []
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                body = readyz(api, one)
                assert body["status"] == "ready", body
                ages.append(body["revocations"]["seconds_since_update"])
                time.sleep(0.4)
            feed = body["revocations"]
            assert (feed["status"], feed["last_error"], feed["entries"]) == (
                "stale",
                "ConnectionError",
                8,
            ), feed
            assert ages == sorted(ages) and ages[-1] - ages[0] >= 2, ages
            for name, token in doomed.items():  # what that worker knew still holds
                r = one.get(f"{api.url}/rest/call", headers=bearer(token), timeout=10)
                assert (r.status_code, r.json()) == (401, REVOKED), name
            for name, token in kept.items():
                assert status_of(api, token).status_code == 200, name
            assert "Traceback" not in api.log()
    finally:
        with minter.app_context():
            minter.extensions["sqlalchemy"].engine.dispose()
