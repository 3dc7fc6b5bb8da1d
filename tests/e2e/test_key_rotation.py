"""Key rotation across real processes: the call API picks up a new ``kid`` without a restart,
keeps accepting tokens of the previous key until it is retired, then refuses them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests

from tests.conftest import AUDIENCE
from tests.e2e.servers import auth_env, call_env, free_port, run_service

pytestmark = pytest.mark.slow


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "auth_server.cli", *args],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _token(auth_url: str, client_id: str, secret: str) -> str:
    r = requests.post(
        f"{auth_url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        auth=(client_id, secret),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _admin_get(api_url: str, token: str) -> requests.Response:
    return requests.get(
        f"{api_url}/admin/users/someone", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_rotate_then_retire(auth_app, call_app, admin_client, databases, keys_dir, tmp_path):
    """Old tokens valid after rotation; new kid fetched on demand; retired kid refused."""
    if databases.backend != "sqlite":
        pytest.skip("key handling does not depend on the database; one backend is enough")
    own_keys = tmp_path / "keys"
    shutil.copytree(keys_dir, own_keys)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = auth_env(databases.auth_url, str(own_keys), issuer, AUDIENCE)
    call = call_env(
        databases.calls_url, issuer, AUDIENCE, jwks_url=f"{issuer}/.well-known/jwks.json"
    )
    call.update(CALL_JWKS_CACHE_TTL="1", CALL_JWKS_MIN_REFRESH_INTERVAL="0")
    with run_service("auth_server", env, port=port) as auth, run_service("call_api", call) as api:
        old = _token(auth.url, admin_client.client_id, admin_client.client_secret)
        old_kid = jwt.get_unverified_header(old)["kid"]
        assert _admin_get(api.url, old).status_code == 200

        _cli(env, "keys", "rotate")
        new = _token(auth.url, admin_client.client_id, admin_client.client_secret)
        new_kid = jwt.get_unverified_header(new)["kid"]
        assert new_kid != old_kid
        jwks = requests.get(f"{auth.url}/.well-known/jwks.json", timeout=10).json()
        assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}
        # The call API has only cached the old key: the new kid triggers a refresh.
        assert _admin_get(api.url, new).status_code == 200
        assert _admin_get(api.url, old).status_code == 200

        _cli(env, "keys", "retire", old_kid)
        jwks = requests.get(f"{auth.url}/.well-known/jwks.json", timeout=10).json()
        assert [k["kid"] for k in jwks["keys"]] == [new_kid]
        time.sleep(1.2)  # past CALL_JWKS_CACHE_TTL: the next use refreshes the cache
        r = _admin_get(api.url, old)
        assert r.status_code == 401
        assert r.json() == {
            "error": "invalid_token",
            "error_description": "The access token is signed by an unknown key.",
        }
        assert _admin_get(api.url, new).status_code == 200
    assert Path(own_keys / "retired" / f"{old_kid}.pem").is_file()


def test_retiring_the_current_key_is_refused(tmp_path):
    from shared.keys import KeyStore

    store = KeyStore(tmp_path)
    key = store.add()
    with pytest.raises(ValueError, match="current signing key"):
        store.retire(key.kid)
