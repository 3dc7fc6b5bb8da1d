"""Client assertions (RFC 7523) and dynamic registration requests for the tests."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey
from werkzeug.test import TestResponse

from tests.conftest import ISSUER

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_URL = f"{ISSUER}/oauth/token"


def ec_key(kid: str | None = None) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid or uuid.uuid4().hex[:8]})


def public_jwks(*keys: Any) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def claims_for(client_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "exp": now + 60,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(claims: dict[str, Any], key: Any, alg: str = "ES256", **header: Any) -> str:
    kid = getattr(key, "kid", None)
    head = {"alg": alg, **({"kid": kid} if kid and alg != "HS256" else {}), **header}
    return jwt.encode(head, claims, key, algorithms=[alg])


def assertion(client_id: str, key: Any, alg: str = "ES256", **overrides: Any) -> str:
    return sign(claims_for(client_id, **overrides), key, alg)


def hs256(client_id: str, secret: str, **overrides: Any) -> str:
    return sign(claims_for(client_id, **overrides), OctKey.import_key(secret), "HS256")


def with_assertion(data: dict[str, str], token: str) -> dict[str, str]:
    return {**data, "client_assertion_type": ASSERTION_TYPE, "client_assertion": token}


def register(
    client: FlaskClient, metadata: dict[str, Any], token: str | None = None
) -> TestResponse:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(
        "/oauth/register",
        data=json.dumps(metadata),
        headers={**headers, "Content-Type": "application/json"},
    )


def manage(
    client: FlaskClient, method: str, reg: dict[str, Any], token: str | None = None, **kw: Any
) -> TestResponse:
    """GET/PUT/DELETE the registration ``reg`` (a registration response)."""
    path = reg["registration_client_uri"][len(ISSUER) :]
    token = reg["registration_access_token"] if token is None else token
    return client.open(path, method=method, headers={"Authorization": f"Bearer {token}"}, **kw)


def mint(app: Any, expires_in: int | None = 3600, max_uses: int | None = None) -> str:
    from auth_server.registration import create_token

    with app.app_context():
        return create_token(expires_in, max_uses).token
