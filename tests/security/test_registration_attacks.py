"""Dynamic client registration and client assertions under attack: scope escalation, redirect
URI tricks, private keys in a jwks, spent initial access tokens, another client's
registration token, assertion replay, wrong audience, alg none and HS256 key confusion."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from joserfc.jwk import ECKey, OctKey

from tests.auth_server.jwt_clients import (
    ISSUER,
    assertion,
    claims_for,
    ec_key,
    hs256,
    manage,
    mint,
    public_jwks,
    register,
    sign,
    with_assertion,
)
from tests.conftest import TEST_REDIRECT, query_of

WEB = {"client_name": "Evil", "redirect_uris": [TEST_REDIRECT]}


def _refused(r: Any, error: str, description: str, status: int = 400) -> None:
    assert (r.status_code, r.json) == (
        status,
        {"error": error, "error_description": description},
    ), r.get_data(as_text=True)


def test_registered_clients_never_get_operator_scopes(client, auth_app, user) -> None:
    token = mint(auth_app)
    for scope in ("admin", "introspect", "dialer", "call admin"):
        r = register(client, {**WEB, "scope": scope}, token)
        assert r.status_code == 400 and r.json["error"] == "invalid_client_metadata", scope
        assert "cannot be registered dynamically" in r.json["error_description"]
    r = register(client, {**WEB, "grant_types": ["client_credentials"], "scope": "call"}, token)
    _refused(
        r,
        "invalid_client_metadata",
        "The client_credentials grant cannot be registered dynamically: a client_credentials "
        "token acts for no person, and its scopes are an operator's to grant (auth-server "
        "clients create).",
    )
    reg = register(client, WEB, token).json
    # Asking for admin at the authorization endpoint: not registered for it.
    params = {
        "response_type": "code",
        "client_id": reg["client_id"],
        "redirect_uri": TEST_REDIRECT,
        "scope": "admin",
        "state": "s",
    }
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    assert query_of(r.headers["Location"])["error"] == "invalid_scope"
    # Nor the client_credentials grant at the token endpoint.
    basic = base64.b64encode(f"{reg['client_id']}:{reg['client_secret']}".encode()).decode()
    r = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 400 and r.json["error"] == "unauthorized_client"


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://app.example/cb#x",
        "https://user:pw@app.example/cb",
        "https://evil.example@app.example/cb",
        "https://*.app.example/cb",
        "/relative/cb",
    ],
)
def test_redirect_uri_tricks(client, auth_app, uri) -> None:
    r = register(client, {**WEB, "redirect_uris": [uri]}, mint(auth_app))
    assert r.status_code == 400 and r.json["error"] == "invalid_redirect_uri", r.json
    assert '"' not in r.json["error_description"]


def test_production_rules_for_uris(auth_app) -> None:
    """In production: http redirect URIs only for loopback, https jwks_uri and page URLs."""
    from authlib.oauth2 import OAuth2Error

    from auth_server.registration import registration_metadata

    cases = [
        ({**WEB, "redirect_uris": ["http://app.example/cb"]}, "http:// is only allowed"),
        ({**WEB, "post_logout_redirect_uris": ["http://app.example/"]}, "http:// is only"),
        ({**WEB, "logo_uri": "http://app.example/logo.png"}, "logo_uri must use https://"),
        (
            {
                **WEB,
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks_uri": "http://app.example/jwks",
            },
            "must use https:// in production",
        ),
    ]
    with auth_app.test_request_context():
        for metadata, fragment in cases:
            with pytest.raises(OAuth2Error) as caught:
                registration_metadata(metadata, production=True)
            assert fragment in caught.value.description, caught.value.description
        assert registration_metadata(
            {**WEB, "redirect_uris": ["http://127.0.0.1:4000/cb"]}, production=True
        )["redirect_uris"] == ["http://127.0.0.1:4000/cb"]


def test_private_key_material_in_jwks_is_refused(client, auth_app) -> None:
    token = mint(auth_app)
    ec = ECKey.generate_key("P-256")
    for key, members in (
        (ec.as_dict(private=True), "d"),
        (OctKey.generate_key(256).as_dict(), "k"),
    ):
        r = register(
            client,
            {**WEB, "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key]}},
            token,
        )
        _refused(
            r,
            "invalid_client_metadata",
            f"The jwks holds private or symmetric key material ({members}): register public "
            "keys only, and keep the private key to yourself.",
        )
    r = register(client, {**WEB, "jwks": public_jwks(ec), "jwks_uri": "https://a/j"}, token)
    _refused(r, "invalid_client_metadata", "Send jwks or jwks_uri, not both.")


def test_weak_or_non_signing_keys_in_jwks_are_refused(client, auth_app) -> None:
    """A private_key_jwt client's keys sign its assertions: no RSA key under 2048 bits, no
    key-agreement key (X25519), no key marked for encryption."""
    from cryptography.hazmat.primitives.asymmetric import rsa, x25519
    from joserfc.jwk import OKPKey

    token = mint(auth_app)
    numbers = rsa.generate_private_key(65537, 1024).public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()

    small = {"kty": "RSA", "n": b64(numbers.n).rstrip("="), "e": b64(numbers.e).rstrip("=")}
    agreement = OKPKey.import_key(x25519.X25519PrivateKey.generate().public_key())
    for key, description in (
        (small, "RSA keys of the jwks must have at least 2048 bits."),
        (agreement.as_dict(), "An OKP key of the jwks must be an Ed25519 or Ed448 signing key."),
        (
            {**ECKey.generate_key("P-256").as_dict(private=False), "use": "enc"},
            "The jwks may hold signing keys only ('use': 'sig').",
        ),
    ):
        r = register(
            client,
            {**WEB, "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key]}},
            token,
        )
        _refused(r, "invalid_client_metadata", description)


def test_spent_initial_access_tokens(client, auth_app) -> None:
    from auth_server.models import RegistrationToken
    from auth_server.registration import revoke_token

    expired, used, revoked = mint(auth_app), mint(auth_app, max_uses=1), mint(auth_app)
    assert register(client, WEB, used).status_code == 201
    with auth_app.app_context():
        db = auth_app.extensions["sqlalchemy"]
        rows = db.session.query(RegistrationToken).order_by(RegistrationToken.id).all()
        rows[0].expires_at = int(time.time()) - 1
        db.session.commit()
        revoke_token(rows[2].id)
    for token, state in (
        (expired, "expired"),
        (used, "used up"),
        (revoked, "revoked"),
        ("made-up", "unknown"),
    ):
        r = register(client, WEB, token)
        _refused(r, "invalid_token", f"The initial access token is {state}.", 401)
        assert r.headers["WWW-Authenticate"] == (
            'Bearer realm="clickcall", error="invalid_token", '
            f'error_description="The initial access token is {state}."'
        )
    r = client.post("/oauth/register", json=WEB, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401 and r.json["error"] == "invalid_token"


def test_registration_token_of_another_client(client, auth_app) -> None:
    token = mint(auth_app)
    a, b = register(client, WEB, token).json, register(client, WEB, token).json
    for method in ("GET", "PUT", "DELETE"):
        r = manage(client, method, b, token=a["registration_access_token"], json={})
        _refused(r, "invalid_token", "This registration access token is for another client.", 401)
    # Neither kind of token stands in for the other, and a missing one is a bare challenge.
    _refused(
        manage(client, "GET", a, token=token),
        "invalid_token",
        "The registration access token is unknown, or its client was deleted.",
        401,
    )
    r = register(client, WEB, a["registration_access_token"])
    _refused(r, "invalid_token", "The initial access token is unknown.", 401)
    r = client.get(a["registration_client_uri"][len(ISSUER) :])
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="clickcall"'
    assert manage(client, "GET", b).status_code == 200  # b is untouched


def _jwt_client(client: Any, auth_app: Any, key: Any, **extra: Any) -> str:
    r = register(
        client,
        {**WEB, "token_endpoint_auth_method": "private_key_jwt", "jwks": public_jwks(key), **extra},
        mint(auth_app),
    )
    assert r.status_code == 201, r.json
    return str(r.json["client_id"])


def _revoke(client: Any, token: str, **form: str) -> Any:
    return client.post("/oauth/revoke", data=with_assertion({"token": "x", **form}, token))


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}"


def test_assertion_attacks(client, auth_app) -> None:
    key = ec_key("k1")
    cid = _jwt_client(client, auth_app, key)
    other = _jwt_client(client, auth_app, ec_key("k2"))
    now = int(time.time())

    # Replay: the same assertion twice.
    once = assertion(cid, key)
    assert _revoke(client, once).status_code == 200
    cases: list[tuple[str, str]] = [
        (once, "The client_assertion was already used (its jti); sign a new one for each request."),
        (
            assertion(cid, key, aud="https://evil.example/oauth/token"),
            "The client_assertion's 'aud' must be this server's issuer (http://127.0.0.1:8888) "
            "or its token endpoint.",
        ),
        (
            assertion(cid, key, exp=now - 120),
            "The client_assertion has expired; sign a new one for each request.",
        ),
        (
            assertion(cid, key, exp=now + 3600),
            "The client_assertion's 'exp' is too far ahead: at most 300 seconds from now.",
        ),
        (
            assertion(cid, key, exp=None),
            "The client_assertion must have an 'exp' claim (a number of seconds).",
        ),
        (
            assertion(cid, key, jti=None),
            "The client_assertion must have a 'jti' claim: a unique string.",
        ),
        (
            assertion(cid, key, iss=other),
            "The client_assertion's 'iss' and 'sub' must both be the client_id.",
        ),
        (
            assertion(cid, ec_key("k1")),  # the right kid, another key
            "The client_assertion's signature does not verify with this client's key.",
        ),
        (
            assertion(other, key),  # names another client, signed with this one's key
            "No key of this client's jwks or jwks_uri matches the client_assertion (its kid "
            "and alg).",
        ),
        (
            _unsigned(claims_for(cid), {"alg": "none"}) + ".",
            "The client_assertion is signed with alg none; a private_key_jwt client must use "
            "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA.",
        ),
        ("not-a-jwt", "The client_assertion is not a signed JWT (compact JWS)."),
    ]
    # HS256 "signed" with the client's public key (key confusion).
    pem = key.as_pem(private=False)
    signing_input = _unsigned(claims_for(cid), {"alg": "HS256", "kid": "k1"})
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    confused = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    cases.append(
        (
            confused,
            "The client_assertion is signed with alg HS256; a private_key_jwt client must use "
            "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA.",
        )
    )
    for token, description in cases:
        _refused(_revoke(client, token), "invalid_client", description, 401)

    _refused(
        _revoke(client, assertion(cid, key), client_id=other),
        "invalid_client",
        "The client_id parameter names another client than the assertion.",
        401,
    )
    r = client.post(
        "/oauth/revoke",
        data={"token": "x", "client_assertion_type": "urn:x", "client_assertion": once},
    )
    _refused(
        r,
        "invalid_client",
        "The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:"
        "jwt-bearer (RFC 7523), with the JWT in client_assertion.",
        401,
    )
    # Two authentications at once.
    r = client.post(
        "/oauth/revoke",
        data=with_assertion({"token": "x"}, assertion(cid, key)),
        headers={"Authorization": "Basic " + base64.b64encode(b"a:b").decode()},
    )
    _refused(
        r,
        "invalid_request",
        "The client authenticated twice, with a client_assertion and with a client secret; use "
        "one method.",
    )


def test_method_and_algorithm_are_the_registered_ones(client, auth_app) -> None:
    token = mint(auth_app)
    secret_client = register(client, WEB, token).json
    _refused(
        _revoke(client, hs256(secret_client["client_id"], secret_client["client_secret"])),
        "invalid_client",
        "This client is registered for client_secret_basic, not for a client_assertion: "
        "authenticate as it was registered.",
        401,
    )
    hs = register(client, {**WEB, "token_endpoint_auth_method": "client_secret_jwt"}, token).json
    _refused(
        _revoke(client, sign(claims_for(hs["client_id"]), ec_key(), "ES256")),
        "invalid_client",
        "The client_assertion is signed with alg ES256; a client_secret_jwt client must use "
        "HS256, HS384, HS512.",
        401,
    )
    assert _revoke(client, hs256(hs["client_id"], hs["client_secret"])).status_code == 200
    # A client that registered ES256 only: ES384 (with a P-384 key it holds) is refused.
    p256, p384 = ec_key("a"), ECKey.generate_key("P-384", parameters={"kid": "b"})
    cid = _jwt_client(client, auth_app, p256, token_endpoint_auth_signing_alg="ES256")
    reg = register(
        client,
        {
            **WEB,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": public_jwks(p256, p384),
            "token_endpoint_auth_signing_alg": "ES256",
        },
        token,
    ).json
    _refused(
        _revoke(client, assertion(reg["client_id"], p384, "ES384")),
        "invalid_client",
        "The client_assertion is signed with alg ES384; a private_key_jwt client must use ES256.",
        401,
    )
    assert _revoke(client, assertion(cid, p256)).status_code == 200


def test_production_never_fetches_a_jwks_uri_on_an_internal_address(auth_app, monkeypatch) -> None:
    """A registered jwks_uri aimed at the server's own network (SSRF) is not fetched."""
    from auth_server import client_auth

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("fetched")

    monkeypatch.setattr(client_auth, "pinned_request", forbidden)
    monkeypatch.setitem(auth_app.config, "APP_ENV", "production")
    with auth_app.app_context():
        for uri in (
            "https://127.0.0.1/jwks",
            "https://10.0.0.5/jwks",
            "https://[::1]/j",
            "https://169.254.169.254/latest",
            "https://localhost/jwks",
        ):
            assert client_auth._fetch_jwks(uri) is None, uri


def test_a_client_cannot_switch_off_what_the_operator_required(client, auth_app, cli) -> None:
    """An RFC 7592 PUT replaces the metadata, but the PAR and DPoP requirements an operator
    set stay on (only the operator turns them off); the client can still turn them on."""
    reg = register(client, WEB, mint(auth_app)).json
    r = cli("clients", "update", reg["client_id"], "--require-par", "--require-dpop")
    assert r.exit_code == 0, r.output
    update = {k: v for k, v in WEB.items()} | {"client_id": reg["client_id"]}
    r = manage(client, "PUT", reg, json=update)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["require_pushed_authorization_requests"] is True
    assert r.json["dpop_bound_access_tokens"] is True
    r = cli("clients", "update", reg["client_id"], "--no-require-par", "--no-require-dpop")
    assert r.exit_code == 0, r.output
    r = manage(client, "PUT", reg, json=update | {"dpop_bound_access_tokens": True})
    assert r.status_code == 200
    assert r.json["dpop_bound_access_tokens"] is True
    assert "require_pushed_authorization_requests" not in r.json


@pytest.mark.parametrize(
    "body",
    [
        '{"client_name": ' + "[" * 5000 + "]" * 5000 + "}",  # deeper than the JSON decoder goes
        '{"client_name": "\\udc80"}',  # a lone surrogate
        '{"client_name": 1e999}',  # infinity
    ],
)
def test_unusable_json_is_refused_not_a_500(client, auth_app, body: str) -> None:
    """Found by the fuzz test: a JSON object nested too deeply made json.loads raise
    RecursionError, a 500 at both registration endpoints."""
    reg = register(client, WEB, mint(auth_app)).json
    for method, path in (
        ("POST", "/oauth/register"),
        ("PUT", reg["registration_client_uri"][len(ISSUER) :]),
    ):
        r = client.open(path, method=method, data=body, content_type="application/json")
        _refused(
            r,
            "invalid_client_metadata",
            "The request body must be a JSON object of client metadata, sent as Content-Type: "
            "application/json (RFC 7591 section 3.1).",
        )
