"""DPoP-bound access tokens at the call API (RFC 9449 §7): ``Authorization: DPoP`` with a
proof on every request, ``WWW-Authenticate: DPoP`` refusals, nonces, CORS."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import TEST_REDIRECT, Flow, UserInfo, make_client
from tests.dpop_helpers import CALL_URL, DPoPKey

ALGS = 'algs="ES256 ES384 ES512 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA"'


def bound_token(auth_app: Flask, user: UserInfo, key: DPoPKey) -> str:
    """A person's ``call`` token bound to ``key`` (public client, code flow, proof)."""
    spa = make_client(auth_app, "SPA", public=True)
    client = auth_app.test_client()
    flow = Flow(client)
    code = flow.authorize(user, spa)["code"]
    r = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": TEST_REDIRECT,
            "code_verifier": flow.verifier or "",
            "client_id": spa.client_id,
        },
        headers={"DPoP": key.proof()},
    )
    assert r.status_code == 200 and r.json["token_type"] == "DPoP", r.get_data(as_text=True)
    return str(r.json["access_token"])


def dpop_get(api: FlaskClient, path: str, token: str, proof: str | None) -> Any:
    headers = {"Authorization": f"DPoP {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return api.get(path, headers=headers)


def test_bound_token_needs_a_proof_per_request(auth_app, api, user, user_token):
    key = DPoPKey()
    token = bound_token(auth_app, user, key)
    url = CALL_URL + "/rest/call"
    r = dpop_get(api, "/rest/call", token, key.proof("GET", url, access_token=token))
    assert r.status_code == 200, r.get_data(as_text=True)
    # A query string is not part of htu.
    r = dpop_get(api, "/rest/call?token_call=x", token, key.proof("GET", url, access_token=token))
    assert r.status_code == 404  # past authentication: no such call

    r = dpop_get(api, "/rest/call", token, None)
    assert r.status_code == 401
    assert r.json["error"] == "invalid_dpop_proof"
    assert r.headers["WWW-Authenticate"] == (
        f'DPoP {ALGS}, error="invalid_dpop_proof", error_description="Send exactly one DPoP '
        'header with the DPoP-bound token."'
    )
    # An unbound token is still a bearer token, and only that.
    assert (
        api.get("/rest/call", headers={"Authorization": f"Bearer {user_token}"}).status_code == 200
    )
    r = dpop_get(api, "/rest/call", user_token, key.proof("GET", url, access_token=user_token))
    assert (r.status_code, r.json["error"]) == (401, "invalid_token")
    assert r.json["error_description"] == (
        "This access token is not DPoP-bound: send it as 'Authorization: Bearer'."
    )
    assert r.headers["WWW-Authenticate"].startswith(f'DPoP {ALGS}, error="invalid_token"')


def test_nonces_and_cors(auth_app, make_call_app, user):
    """CALL_DPOP_NONCE: 401 use_dpop_nonce with a DPoP-Nonce until the proof has it. CORS
    lets a browser app send DPoP and read DPoP-Nonce."""
    app = make_call_app(
        CALL_DPOP_NONCE=True, CALL_SECRET_KEY="k" * 32, CORS_ORIGINS=["https://spa.example"]
    )
    api = app.test_client()
    key = DPoPKey()
    token = bound_token(auth_app, user, key)
    url = CALL_URL + "/rest/call"
    r = dpop_get(api, "/rest/call", token, key.proof("GET", url, access_token=token))
    assert (r.status_code, r.json["error"]) == (401, "use_dpop_nonce")
    assert r.headers["WWW-Authenticate"].startswith(f'DPoP {ALGS}, error="use_dpop_nonce"')
    nonce = r.headers["DPoP-Nonce"]
    proof = key.proof("GET", url, access_token=token, nonce=nonce)
    assert dpop_get(api, "/rest/call", token, proof).status_code == 200

    r = api.options(
        "/rest/call",
        headers={
            "Origin": "https://spa.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, dpop",
        },
    )
    assert "dpop" in r.headers["Access-Control-Allow-Headers"].lower()
    r = dpop_get(api, "/rest/call", token, None)
    assert "DPoP-Nonce" in r.headers.get("Access-Control-Expose-Headers", "")
