"""The auth server goes down (stopped: connection refused; or hung: accepts, never answers)
while the call API keeps serving.

Guarantees asserted:
- valid tokens keep working from the call API's cached JWKS, even after the cache's TTL
  has run out and refreshes fail (every answer 200/201, and within a bound);
- a token signed by a new key (a ``kid`` the call API has never seen — the auth server
  rotated its key before it went away) is refused with 401 ``invalid_token`` and an
  RFC 6750 ``WWW-Authenticate`` header, not a 500, and quickly (one JWKS timeout at most);
- the failing JWKS refreshes are rate-limited (``CALL_JWKS_MIN_REFRESH_INTERVAL``), not one
  per request;
- when the auth server returns (same URL, rotated keys), the new-kid token is accepted
  within the refresh interval, and the old one still is — no restart of the call API.
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import jwt
import pytest
import requests

from tests.conftest import auth_config
from tests.e2e.servers import free_port
from tests.faults.conftest import FaultEnv, services
from tests.faults.load import (
    NUMBER,
    assert_log_clean,
    bearer,
    report,
    scaled,
)

pytestmark = pytest.mark.faults

# Short versions of the defaults (10 s / 300 s / 3 s), in the same order: the timeout stays
# below the refresh interval. (With a timeout >= the interval and a hung auth server, the
# attempts run back to back and requests with a stale cache queue behind several timeouts.)
MIN_REFRESH = 2  # CALL_JWKS_MIN_REFRESH_INTERVAL
CACHE_TTL = 1  # CALL_JWKS_CACHE_TTL: shorter than the outage, so the cache goes stale
JWKS_TIMEOUT = 1  # CALL_JWKS_TIMEOUT


@contextmanager
def blackhole(port: int) -> Iterator[None]:
    """A listener on the auth server's port that accepts connections and never answers."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    try:
        yield
    finally:
        sock.close()


def jwks_errors(api_url: str) -> float:
    text = requests.get(f"{api_url}/metrics", timeout=10).text
    m = re.search(r'^clickcall_jwks_refreshes_total\{outcome="error"\} ([0-9.e+]+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


@pytest.mark.parametrize("how", ["stopped", "hung"])
def test_auth_server_down(env: FaultEnv, scratch_dir: Path, how: str) -> None:
    keys = scratch_dir / "keys"
    shutil.copytree(env.keys_dir, keys)
    port = free_port()
    jwks_url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    old_token = env.tokens()[0]
    outage = scaled(4.0, 30.0)
    # One worker: the JWKS cache is per process, and this test is about that cache.
    api_cm = env.call_api(
        workers=1,
        threads=8,
        jwks_url=jwks_url,
        CALL_JWKS_MIN_REFRESH_INTERVAL=str(MIN_REFRESH),
        CALL_JWKS_CACHE_TTL=str(CACHE_TTL),
        CALL_JWKS_TIMEOUT=str(JWKS_TIMEOUT),
    )
    with services(api_cm) as (api,):
        with requests.Session() as http:

            def get(token: str) -> requests.Response:
                return http.get(f"{api.url}/rest/call", headers=bearer(token), timeout=20)

            with services(env.auth_server(port=port, keys_dir=keys)):
                r = get(old_token)
                assert r.status_code == 200, r.text  # JWKS fetched and cached

            # -- the auth server is gone; it rotated its key just before
            with blackhole(port) if how == "hung" else nullcontext():
                from auth_server import create_app as create_auth
                from shared.keys import KeyStore

                new_key = KeyStore(keys).add("RS256")
                other_replica = create_auth(auth_config(env.dbs, keys))
                new_token = env.mint(env.users[1], app=other_replica)
                assert kid_of(new_token) == new_key.kid != kid_of(old_token)
                with other_replica.app_context():
                    other_replica.extensions["sqlalchemy"].engine.dispose()

                errors_before = jwks_errors(api.url)
                down_from = time.monotonic()
                valid: list[tuple[int, float]] = []
                refused: list[tuple[int, float, str, str]] = []

                def valid_request(i: int) -> tuple[int, float]:
                    t = time.monotonic()
                    with requests.Session() as s:
                        if i % 2:
                            resp = s.post(
                                f"{api.url}/rest/call",
                                json={"number": NUMBER},
                                headers=bearer(old_token),
                                timeout=20,
                            )
                        else:
                            resp = s.get(
                                f"{api.url}/rest/call", headers=bearer(old_token), timeout=20
                            )
                    return resp.status_code, time.monotonic() - t

                def unknown_kid_request(_: int) -> tuple[int, float, str, str]:
                    t = time.monotonic()
                    with requests.Session() as s:
                        resp = s.get(f"{api.url}/rest/call", headers=bearer(new_token), timeout=20)
                    return (
                        resp.status_code,
                        time.monotonic() - t,
                        resp.headers.get("WWW-Authenticate", ""),
                        resp.text,
                    )

                with ThreadPoolExecutor(6) as pool:
                    n = 0
                    while time.monotonic() - down_from < outage:
                        valid += pool.map(valid_request, range(n, n + 4))
                        refused += pool.map(unknown_kid_request, range(2))
                        n += 4
                        time.sleep(0.05)
                down_for = time.monotonic() - down_from
                errors_during = jwks_errors(api.url) - errors_before

            assert valid and all(status in (200, 201) for status, _ in valid), valid
            # A stale-cache refresh may have to wait out one JWKS timeout, never more.
            max_valid = max(t for _, t in valid)
            assert max_valid < JWKS_TIMEOUT + 2.0, max_valid
            for status, elapsed, challenge, body in refused:
                assert status == 401, (status, body[:300])
                assert 'error="invalid_token"' in challenge, challenge
                assert '"error":"invalid_token"' in body.replace(" ", ""), body
                assert elapsed < JWKS_TIMEOUT + 2.0, elapsed
            # Rate-limited refreshes: about one per MIN_REFRESH seconds, not one per request.
            assert 1 <= errors_during <= down_for / MIN_REFRESH + 2, (errors_during, down_for)
            assert len(refused) > errors_during

            # -- the auth server returns on the same URL, with the rotated keys
            with services(env.auth_server(port=port, keys_dir=keys)) as (auth,):
                back_at = time.monotonic()
                while True:
                    r = get(new_token)
                    if r.status_code == 200:
                        break
                    assert r.status_code == 401, r.text
                    assert time.monotonic() - back_at < MIN_REFRESH + 10, "no recovery"
                    time.sleep(0.1)
                recovery = time.monotonic() - back_at
                assert get(old_token).status_code == 200
                assert_log_clean(auth.log(), "auth_server")
        assert_log_clean(api.log(), "call_api")

    report(
        f"auth server {how}: {down_for:.1f}s down; {len(valid)} requests with a cached-key "
        f"token all 200/201 (max {max_valid:.2f}s), {len(refused)} with an unknown kid all "
        f"401 invalid_token (max {max(e for _, e, _, _ in refused):.2f}s); "
        f"{errors_during:.0f} failed JWKS refreshes (min interval {MIN_REFRESH}s); "
        f"new kid accepted {recovery:.2f}s after the auth server was back"
    )
