"""Both services as real gunicorn processes: a token from the auth server works at the call API."""

import requests

from tests.conftest import AUDIENCE
from tests.e2e.servers import auth_env, call_env, free_port, run_service


def test_client_credentials_token_reads_admin(
    auth_app, call_app, admin_client, databases, keys_dir
):
    auth_port = free_port()
    issuer = f"http://127.0.0.1:{auth_port}"
    with (
        run_service(
            "auth_server",
            auth_env(databases.auth_url, str(keys_dir), issuer, AUDIENCE),
            port=auth_port,
        ) as auth,
        run_service(
            "call_api",
            call_env(
                databases.calls_url, issuer, AUDIENCE, jwks_url=f"{issuer}/.well-known/jwks.json"
            ),
        ) as api,
    ):
        r = requests.post(
            f"{auth.url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "admin"},
            auth=(admin_client.client_id, admin_client.client_secret),
            timeout=10,
        )
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        r = requests.get(
            f"{api.url}/admin/users/nobody",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "subject": "nobody",
            "max_ongoing": 2,
            "limit_source": "default",
            "ongoing": 0,
            "recent_calls": [],
        }
