"""DPoP proofs for the tests (RFC 9449), made with cryptography keys and PyJWT."""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from shared.dpop import access_token_hash
from shared.keys import public_jwk, thumbprint

ISSUER = "http://127.0.0.1:8888"
TOKEN_URL = f"{ISSUER}/oauth/token"
PAR_URL = f"{ISSUER}/oauth/par"
CALL_URL = "http://127.0.0.1:8889"
DROP = object()


class DPoPKey:
    """A client's DPoP key pair (EC P-256): ``proof(...)`` signs a proof with it."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = public_jwk(self.private_key.public_key())
        self.jkt = thumbprint(self.private_key.public_key())

    def proof(
        self,
        htm: str = "POST",
        htu: str = TOKEN_URL,
        access_token: str | None = None,
        headers: dict[str, Any] | None = None,
        key: Any = None,
        algorithm: str = "ES256",
        **claims: Any,
    ) -> str:
        body: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": htm,
            "htu": htu,
            "iat": int(time.time()),
        }
        if access_token is not None:
            body["ath"] = access_token_hash(access_token)
        head: dict[str, Any] = {"typ": "dpop+jwt", "jwk": self.jwk}
        for name, value in {**body, **claims}.items():
            if value is DROP:
                body.pop(name, None)
            else:
                body[name] = value
        for name, value in (headers or {}).items():
            if value is DROP:
                head.pop(name, None)
            else:
                head[name] = value
        return jwt.encode(
            body,
            self.private_key if key is None else key,
            algorithm=algorithm,
            headers=head,
        )
