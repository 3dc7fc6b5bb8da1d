"""DPoP (RFC 9449) under attack: every forged, replayed or misdirected proof is refused at
the auth server's token endpoint (400 ``invalid_dpop_proof`` / ``use_dpop_nonce``) and at the
call API (401 with a ``WWW-Authenticate: DPoP`` challenge), saying why; a DPoP-bound token
is useless without its key, and never accepted as a bearer token."""

from __future__ import annotations

import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.dpop import NonceSource, access_token_hash
from shared.keys import public_jwk
from tests.call_api.test_dpop import bound_token, dpop_get
from tests.conftest import Flow, make_client
from tests.dpop_helpers import CALL_URL, DROP, ISSUER, TOKEN_URL, DPoPKey

HTU = "The DPoP proof's 'htu' must be this request's URL without query or fragment: "
ALGS = "ES256 ES384 ES512 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA"


def test_forged_and_replayed_proofs_at_the_token_endpoint(client, admin_client):
    key = DPoPKey()
    other = ec.generate_private_key(ec.SECP256R1())
    private_jwk = {**key.jwk, "d": "AAAA"}
    rsa_jwk = public_jwk(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    )
    now = int(time.time())
    unsigned = jwt.encode(
        {"jti": "x", "htm": "POST", "htu": TOKEN_URL, "iat": now},
        None,
        algorithm="none",
        headers={"typ": "dpop+jwt", "jwk": key.jwk},
    )
    hmac_proof = jwt.encode(
        {"jti": "y", "htm": "POST", "htu": TOKEN_URL, "iat": now},
        "a-shared-secret-of-32-bytes-long!",
        algorithm="HS256",
        headers={"typ": "dpop+jwt", "jwk": key.jwk},
    )
    replayed = key.proof()
    form = {"grant_type": "client_credentials", "scope": "admin"}

    def send(proof: str | list[str]) -> tuple[int, str, str]:
        proofs = proof if isinstance(proof, list) else [proof]
        headers = [*admin_client.basic().items(), *(("DPoP", p) for p in proofs)]
        r = client.post("/oauth/token", data=form, headers=headers)
        return r.status_code, r.json["error"], r.json["error_description"]

    assert (
        client.post(
            "/oauth/token", data=form, headers={**admin_client.basic(), "DPoP": replayed}
        ).status_code
        == 200
    )
    cases = {
        "replayed jti": (
            replayed,
            "This DPoP proof was used before (its 'jti' was seen); make a new proof for every "
            "request.",
        ),
        "wrong htm": (
            key.proof(htm="GET"),
            "The DPoP proof's 'htm' must be this request's method, POST.",
        ),
        "wrong htu": (key.proof(htu="https://evil.example/oauth/token"), HTU + TOKEN_URL + "."),
        "call API's htu": (key.proof(htu=CALL_URL + "/oauth/token"), HTU + TOKEN_URL + "."),
        "stale iat": (
            key.proof(iat=now - 120),
            "The DPoP proof's 'iat' is more than 60 seconds from the server's time; make a new "
            "proof for every request (and check the client's clock).",
        ),
        "future iat": (
            key.proof(iat=now + 120),
            "The DPoP proof's 'iat' is more than 60 seconds from the server's time; make a new "
            "proof for every request (and check the client's clock).",
        ),
        "no jti": (
            key.proof(jti=DROP),
            "The DPoP proof needs a 'jti': a unique random string per proof.",
        ),
        "private key in jwk": (
            key.proof(headers={"jwk": private_jwk}),
            "The DPoP proof's 'jwk' contains private key material; send only the public key "
            "(and make a new key pair: this one is no longer secret).",
        ),
        "alg none": (
            unsigned,
            f"The DPoP proof must be signed with an asymmetric algorithm: {ALGS}.",
        ),
        "alg HS256": (
            hmac_proof,
            f"The DPoP proof must be signed with an asymmetric algorithm: {ALGS}.",
        ),
        "typ JWT": (
            key.proof(headers={"typ": "JWT"}),
            "The DPoP proof's header must have typ 'dpop+jwt'.",
        ),
        "no jwk": (
            key.proof(headers={"jwk": DROP}),
            "The DPoP proof's header must carry the public key as 'jwk'.",
        ),
        "jwk of another kind": (
            key.proof(headers={"jwk": rsa_jwk}),
            "The DPoP proof's 'jwk' is not a key for ES256.",
        ),
        "signed by another key than its jwk": (
            key.proof(key=other),
            "The DPoP proof's signature does not verify with its 'jwk'.",
        ),
        "not a JWT": (
            "not-a-proof",
            "The DPoP header must hold one proof: a compact JWS (a signed JWT).",
        ),
        "two proofs": ([key.proof(), key.proof()], "Send exactly one DPoP header."),
    }
    for name, (proof, description) in cases.items():
        assert send(proof) == (400, "invalid_dpop_proof", description), name
    # htu compared normalised, without query and fragment.
    r = client.post(
        "/oauth/token",
        data=form,
        headers={
            **admin_client.basic(),
            "DPoP": key.proof(htu="HTTP://127.0.0.1:8888/oauth/token?a=b#c"),
        },
    )
    assert r.status_code == 200, r.get_data(as_text=True)


def test_missing_and_expired_nonces(app_with):
    app = app_with(AUTH_DPOP_NONCE=True)
    machine = make_client(
        app, "M", redirect_uris=[], grant_types=("client_credentials",), response_types=(),
        scope="admin",
    )  # fmt: skip
    client = app.test_client()
    key = DPoPKey()
    expired = NonceSource(app.config["SECRET_KEY"].encode()).current(time.time() - 700)
    form = {"grant_type": "client_credentials", "scope": "admin"}
    for proof, description in (
        (
            key.proof(),
            "This server requires a nonce in DPoP proofs: use the one in the DPoP-Nonce "
            "response header.",
        ),
        (
            key.proof(nonce=expired),
            "The DPoP proof's nonce is unknown or expired: use the one in the DPoP-Nonce "
            "response header.",
        ),
    ):
        r = client.post("/oauth/token", data=form, headers={**machine.basic(), "DPoP": proof})
        assert (r.status_code, r.json["error"], r.json["error_description"]) == (
            400,
            "use_dpop_nonce",
            description,
        )
        assert r.headers["DPoP-Nonce"] != expired


def test_bound_token_without_its_key_at_the_call_api(auth_app, api, user):
    key = DPoPKey()
    token = bound_token(auth_app, user, key)
    url = CALL_URL + "/rest/call"
    thief = DPoPKey()

    r = api.get("/rest/call", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json == {
        "error": "invalid_token",
        "error_description": "This access token is DPoP-bound: send it as 'Authorization: "
        "DPoP <token>' with a DPoP proof, not as a bearer token.",
    }
    assert r.headers["WWW-Authenticate"].startswith(f'DPoP algs="{ALGS}", error="invalid_token"')
    assert api.get(f"/rest/call?access_token={token}").status_code == 401

    replayed = key.proof("GET", url, access_token=token)
    assert dpop_get(api, "/rest/call", token, replayed).status_code == 200
    cases = {
        "proof by another key than cnf.jkt": (
            thief.proof("GET", url, access_token=token),
            "The DPoP proof is signed by another key than the one this token is bound to.",
        ),
        "missing ath": (
            key.proof("GET", url),
            "The DPoP proof needs 'ath', the hash of the access token it goes with.",
        ),
        "wrong ath": (
            key.proof("GET", url, ath=access_token_hash(token + "x")),
            "The DPoP proof's 'ath' is not the hash of this access token.",
        ),
        "replayed jti": (
            replayed,
            "This DPoP proof was used before (its 'jti' was seen); make a new proof for every "
            "request.",
        ),
        "wrong htm": (
            key.proof("POST", url, access_token=token),
            "The DPoP proof's 'htm' must be this request's method, GET.",
        ),
        "the auth server's htu": (
            key.proof("GET", ISSUER + "/rest/call", access_token=token),
            HTU + url + ".",
        ),
    }
    for name, (proof, description) in cases.items():
        r = dpop_get(api, "/rest/call", token, proof)
        assert (r.status_code, r.json["error"], r.json["error_description"]) == (
            401,
            "invalid_dpop_proof",
            description,
        ), name
        assert r.headers["WWW-Authenticate"].startswith(
            f'DPoP algs="{ALGS}", error="invalid_dpop_proof"'
        )


def test_client_that_must_use_dpop_gets_no_bearer_token_from_the_authorization_endpoint(
    client, auth_app, user
):
    """A client registered with ``dpop_bound_access_tokens`` is refused the implicit flow's
    access tokens (``token``, ``id_token token``): they come from the authorization endpoint,
    with no proof, so they would be plain bearer tokens. ``unauthorized_client``, in the
    fragment of its validated redirect URI; an ``id_token`` alone is still served."""
    from urllib.parse import urlencode

    from auth_server.clients import set_request_policy
    from tests.auth_server.helpers import sign_in
    from tests.auth_server.oidc_helpers import make_oidc_client
    from tests.conftest import TEST_REDIRECT, fragment_of

    app = make_oidc_client(auth_app)
    with auth_app.app_context():
        set_request_policy(app.client_id, require_dpop=True)
    for response_type in ("id_token token", "id_token"):
        params = {
            "response_type": response_type,
            "client_id": app.client_id,
            "redirect_uri": TEST_REDIRECT,
            "scope": "openid call",
            "state": "s",
            "nonce": f"n-{response_type.replace(' ', '-')}",
        }
        r = client.get("/oauth/auth?" + urlencode(params))
        if r.headers["Location"].startswith("/auth/login"):
            r = sign_in(client, user, **params)
        if r.status_code == 303:
            r = client.post(
                "/auth/grant",
                data={**params, "grant": "true", "csrf_token": Flow(client).csrf()},
            )
        fragment = fragment_of(r.headers["Location"])
        if response_type == "id_token":
            assert "id_token" in fragment and "access_token" not in fragment
            continue
        assert "access_token" not in fragment
        assert fragment["error"] == "unauthorized_client"
        assert fragment["error_description"] == (
            "This client is registered with dpop_bound_access_tokens: its access tokens come "
            "from the token endpoint with a DPoP proof, never from the authorization endpoint "
            "(use response_type=code)."
        )
        assert fragment["state"] == "s"
        # Nor through a pushed request: refused at PAR already.
        r = client.post("/oauth/par", data={**params, "nonce": "n-pushed"}, headers=app.basic())
        assert (r.status_code, r.json["error"]) == (400, "unauthorized_client")
