"""DPoP at the auth server (RFC 9449): bound access tokens (cnf.jkt, token_type DPoP),
refresh tokens of public clients bound to the key, clients that must use DPoP, server
nonces, and authorization codes bound with dpop_jkt (§10)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from flask.testing import FlaskClient

from shared.dpop import RedisReplayCache
from tests.auth_server.test_par import authorize_pushed, push, pushed
from tests.conftest import TEST_REDIRECT, ClientInfo, Flow, make_client
from tests.dpop_helpers import PAR_URL, DPoPKey


def redeem(
    client: FlaskClient, app_client: ClientInfo, code: str, verifier: str, proof: str | None
) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": TEST_REDIRECT,
        "code_verifier": verifier,
    }
    headers = {"DPoP": proof} if proof else {}
    if app_client.client_secret:
        headers.update(app_client.basic())
    else:
        data["client_id"] = app_client.client_id
    return client.post("/oauth/token", data=data, headers=headers)


def refresh(client: FlaskClient, app_client: ClientInfo, token: str, proof: str | None) -> Any:
    data = {"grant_type": "refresh_token", "refresh_token": token}
    headers = {"DPoP": proof} if proof else {}
    if app_client.client_secret:
        headers.update(app_client.basic())
    else:
        data["client_id"] = app_client.client_id
    return client.post("/oauth/token", data=data, headers=headers)


def error(r: Any) -> tuple[int, str, str]:
    return r.status_code, r.json["error"], r.json["error_description"]


def test_public_client_gets_bound_tokens(client, auth_app, user, admin_client):
    """A proof at the token endpoint: token_type DPoP, cnf.jkt in the access token and in
    introspection; the public client's refresh token needs a proof by the same key (a
    refusal burns nothing); a confidential client's refresh token is not bound."""
    spa = make_client(
        auth_app, "SPA", public=True, grant_types=("authorization_code", "refresh_token")
    )
    key = DPoPKey()
    flow = Flow(client)
    code = flow.authorize(user, spa)["code"]
    r = redeem(client, spa, code, flow.verifier or "", key.proof())
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["token_type"] == "DPoP"
    claims = jwt.decode(r.json["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": key.jkt}
    introspected = client.post(
        "/oauth/introspect", data={"token": r.json["access_token"]}, headers=admin_client.basic()
    )
    assert introspected.status_code == 200
    # The admin client may not introspect others' tokens: inactive, and nothing leaks.
    assert introspected.json == {"active": False}

    token = r.json["refresh_token"]
    assert error(refresh(client, spa, token, None)) == (
        400,
        "invalid_grant",
        "The refresh token is bound to a DPoP key: send a DPoP proof signed with that key.",
    )
    assert error(refresh(client, spa, token, DPoPKey().proof())) == (
        400,
        "invalid_grant",
        "The refresh token is bound to another DPoP key than the one that signed this proof.",
    )
    r = refresh(client, spa, token, key.proof())
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["token_type"] == "DPoP"
    claims = jwt.decode(r.json["access_token"], options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": key.jkt}

    web = make_client(auth_app, "Web")
    code = flow.authorize(user, web)["code"]
    r = redeem(client, web, code, flow.verifier or "", key.proof())
    assert r.json["token_type"] == "DPoP"
    r2 = client.post(
        "/oauth/introspect", data={"token": r.json["access_token"]}, headers=web.basic()
    )
    assert r2.json["token_type"] == "DPoP" and r2.json["cnf"] == {"jkt": key.jkt}
    r = refresh(client, web, r.json["refresh_token"], None)  # confidential: not bound
    assert r.status_code == 200 and r.json["token_type"] == "Bearer"
    assert "cnf" not in jwt.decode(r.json["access_token"], options={"verify_signature": False})

    # client_credentials too
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        headers={**admin_client.basic(), "DPoP": key.proof()},
    )
    assert r.status_code == 200 and r.json["token_type"] == "DPoP"

    meta = client.get("/.well-known/oauth-authorization-server").json
    assert "ES256" in meta["dpop_signing_alg_values_supported"]
    assert "none" not in meta["dpop_signing_alg_values_supported"]
    assert not any(a.startswith("HS") for a in meta["dpop_signing_alg_values_supported"])


def test_client_that_must_use_dpop(client, cli, admin_client):
    """dpop_bound_access_tokens (CLI --require-dpop): no token without a proof."""
    r = cli("clients", "update", admin_client.client_id, "--require-dpop")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["dpop_bound_access_tokens"] is True
    form = {"grant_type": "client_credentials", "scope": "admin"}
    r = client.post("/oauth/token", data=form, headers=admin_client.basic())
    assert error(r) == (
        400,
        "invalid_dpop_proof",
        "This client is registered with dpop_bound_access_tokens: every token request "
        "needs a DPoP proof (the DPoP header).",
    )
    r = client.post(
        "/oauth/token", data=form, headers={**admin_client.basic(), "DPoP": DPoPKey().proof()}
    )
    assert r.status_code == 200 and r.json["token_type"] == "DPoP"
    # Revocation needs no proof.
    token = r.json["access_token"]
    r = client.post("/oauth/revoke", data={"token": token}, headers=admin_client.basic())
    assert r.status_code == 200
    assert cli("clients", "update", admin_client.client_id, "--no-require-dpop").exit_code == 0
    r = client.post("/oauth/token", data=form, headers=admin_client.basic())
    assert r.status_code == 200 and r.json["token_type"] == "Bearer"


def test_server_nonces(app_with):
    """AUTH_DPOP_NONCE: use_dpop_nonce with a DPoP-Nonce header until the proof carries it;
    every answer carries the current nonce. CORS lets browser apps send DPoP and read
    DPoP-Nonce."""
    app = app_with(AUTH_DPOP_NONCE=True, CORS_ORIGINS=["https://spa.example"])
    machine = make_client(
        app,
        "Machine",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="admin",
    )
    client = app.test_client()
    key = DPoPKey()
    form = {"grant_type": "client_credentials", "scope": "admin"}
    r = client.post("/oauth/token", data=form, headers={**machine.basic(), "DPoP": key.proof()})
    assert error(r) == (
        400,
        "use_dpop_nonce",
        "This server requires a nonce in DPoP proofs: use the one in the DPoP-Nonce response "
        "header.",
    )
    nonce = r.headers["DPoP-Nonce"]
    r = client.post(
        "/oauth/token", data=form, headers={**machine.basic(), "DPoP": key.proof(nonce="stale")}
    )
    assert r.json["error"] == "use_dpop_nonce"
    assert r.headers["DPoP-Nonce"] == nonce
    r = client.post(
        "/oauth/token", data=form, headers={**machine.basic(), "DPoP": key.proof(nonce=nonce)}
    )
    assert r.status_code == 200 and r.json["token_type"] == "DPoP"
    assert r.headers["DPoP-Nonce"] == nonce
    for path in ("/oauth/token", "/oauth/par"):
        r = client.options(
            path,
            headers={
                "Origin": "https://spa.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "dpop",
            },
        )
        assert "dpop" in r.headers["Access-Control-Allow-Headers"].lower(), path
    r = client.post("/oauth/token", data=form, headers={"Origin": "https://spa.example"})
    assert "DPoP-Nonce" in r.headers["Access-Control-Expose-Headers"]


def test_code_bound_with_dpop_jkt(client, auth_app, user):
    """RFC 9449 §10: dpop_jkt at the authorization endpoint, or a proof at PAR, binds the
    code: it redeems only with a proof by that key (a refusal does not burn it)."""
    spa = make_client(auth_app, "SPA", public=True)
    key = DPoPKey()
    flow = Flow(client)
    code = flow.authorize(user, spa, dpop_jkt=key.jkt)["code"]
    verifier = flow.verifier or ""
    assert error(redeem(client, spa, code, verifier, None)) == (
        400,
        "invalid_grant",
        "The authorization code is bound to a DPoP key (dpop_jkt): send a DPoP proof signed "
        "with that key.",
    )
    r = redeem(client, spa, code, verifier, DPoPKey().proof())
    assert r.json["error"] == "invalid_grant"
    r = redeem(client, spa, code, verifier, key.proof())
    assert r.status_code == 200 and r.json["token_type"] == "DPoP"

    r = client.get(
        "/oauth/auth?response_type=code&client_id=" + spa.client_id + "&dpop_jkt=short",
        headers={"Accept": "application/json"},
    )
    assert error(r) == (
        400,
        "invalid_request",
        "The dpop_jkt parameter must be the RFC 7638 SHA-256 thumbprint of the DPoP key: 43 "
        "base64url characters.",
    )

    # A proof at PAR sets dpop_jkt; a dpop_jkt of another key is refused there.
    verifiers: list[str] = []
    form = pushed(spa, verifiers)
    r = client.post("/oauth/par", data=form, headers={"DPoP": key.proof(htu=PAR_URL)})
    assert r.status_code == 201, r.get_data(as_text=True)
    r2 = client.post(
        "/oauth/par",
        data={**form, "dpop_jkt": DPoPKey().jkt},
        headers={"DPoP": key.proof(htu=PAR_URL)},
    )
    assert error(r2) == (
        400,
        "invalid_dpop_proof",
        "The dpop_jkt parameter is not the thumbprint of the DPoP proof's key.",
    )
    done = authorize_pushed(client, user, spa.client_id, r.json["request_uri"])
    code = dict(p.split("=", 1) for p in done.headers["Location"].split("?")[1].split("&"))
    assert redeem(client, spa, code["code"], verifiers[0], None).json["error"] == "invalid_grant"
    assert redeem(client, spa, code["code"], verifiers[0], key.proof()).status_code == 200
    assert push(client, spa, **pushed(spa)).status_code == 201  # no proof: fine


def test_replay_cache_in_redis_is_shared_by_replicas(app_with):
    """AUTH_DPOP_REDIS_URL: two replicas (separate apps) share the real Redis at
    127.0.0.1:6379, so a proof accepted by one is a replay at the other."""
    from tests.security.test_lockout import redis_url

    url = redis_url()
    first, second = (app_with(AUTH_DPOP_REDIS_URL=url) for _ in range(2))
    machine = make_client(
        first,
        "Machine",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="admin",
    )
    form = {"grant_type": "client_credentials", "scope": "admin"}
    proof = DPoPKey().proof()
    r = first.test_client().post(
        "/oauth/token", data=form, headers={**machine.basic(), "DPoP": proof}
    )
    assert (r.status_code, r.json["token_type"]) == (200, "DPoP")
    r = second.test_client().post(
        "/oauth/token", data=form, headers={**machine.basic(), "DPoP": proof}
    )
    assert error(r) == (
        400,
        "invalid_dpop_proof",
        "This DPoP proof was used before (its 'jti' was seen); make a new proof for every request.",
    )
    with first.app_context():  # Redis saw the replay, not the shared table
        from auth_server.extensions import db
        from auth_server.models import DPoPJti

        assert db.session.query(DPoPJti).count() == 0
    # The cache itself: SET NX with an expiry, under its own prefix.
    cache = RedisReplayCache.from_url(url, f"clickcall-test:{uuid.uuid4()}:")
    assert cache.first_use("a", int(time.time()) + 10) is True
    assert cache.first_use("a", int(time.time()) + 10) is False
    assert cache.first_use("b", int(time.time()) + 10) is True


def test_userinfo_with_a_bound_token(client, auth_app, user):
    """userinfo is a resource like the call API: a bound token with the DPoP scheme and a
    proof (ath included); never as a bearer token."""
    spa = make_client(auth_app, "SPA", public=True, scope="openid call")
    key = DPoPKey()
    flow = Flow(client)
    code = flow.authorize(user, spa, scope="openid")["code"]
    token = redeem(client, spa, code, flow.verifier or "", key.proof()).json["access_token"]
    url = "http://127.0.0.1:8888/oauth/userinfo"
    r = client.get(
        "/oauth/userinfo",
        headers={"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url, token)},
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["sub"] == user.id
    r = client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert (r.status_code, r.json["error"]) == (401, "invalid_token")
    assert r.headers["WWW-Authenticate"].startswith('DPoP algs="ES256')
    r = client.get(
        "/oauth/userinfo",
        headers={"Authorization": f"DPoP {token}", "DPoP": DPoPKey().proof("GET", url, token)},
    )
    assert (r.status_code, r.json["error"]) == (401, "invalid_dpop_proof")
