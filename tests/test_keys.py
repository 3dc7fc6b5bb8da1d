"""Key handling (``shared.keys``, ``auth_server.keyring``): kids, JWK/JWKS, the lifecycle.

The kid of a key is its RFC 7638 thumbprint: issued tokens and the JWKS carry it, so it must
never change for a given key. It is checked against kids pinned from the earlier in-house
implementation, the RFC's own example, and an independent implementation (jwcrypto).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwk as jwcrypto_jwk

from shared.keys import (
    KeyStore,
    PublicKey,
    SigningKey,
    algorithm_for,
    generate_private_key,
    jwks,
    load_public_key_pem,
    parse_jwks,
    public_jwk,
    public_pem,
    thumbprint,
)

# Public keys with the kids the earlier hand-written thumbprint gave them.
PINNED = {
    "RS256": (
        "8e929Er5V5ORUn2O18Qpu40Kp4japAb2R-Q_mzcnbIk",
        """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAjZLxIsukJMVlnCZzokoZ
Q9MV7PEDNYVmVLvsqo3N5TClZx8E7LKMx6rsOqSjJ1quIzmmpklckzSJ5yAsVaRQ
li1vu6ShPXSklVCnBA2NfjB6GRII6B3lsVTrtUJgQELLmXRi/Wk49ys2U/otMsbW
umlcLpfaBmbZm2XtF/eTWJohwY1Zsr5fSUW8gsWSP3BNS33EnpOA2R4R8xS8a4GQ
DeGPSJIze1LZduByWOQ8kO/hEU+qkbbxY+gnwvMbQSF6QOvoK+z0jLSlrEnHTG9r
A4Twbr0o81eqOc5tUd+0YvOWlMAXoUlJ62l6xzYRYOlIxg/r8h2+9n1Z1cX5UA91
VwIDAQAB
-----END PUBLIC KEY-----
""",
    ),
    "ES256": (
        "xWIYCKIOu1DHsd-4ANfkn-vZ5yx06LOTgAzzQkjhZt0",
        """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEvDg+/EylsheOaYks3Cu2R1t63Ira
C4IiXqJ7T9Be0AOBafk4idFcpOu30COjZmffm2pt8BlHERBTTBPftdMFOQ==
-----END PUBLIC KEY-----
""",
    ),
    # x starts with a zero byte: the coordinate must stay padded to 32 bytes.
    "ES256-short-x": (
        "PkWBkYD4v7gBWkWUhmRDtWtTuNX5dZrcidqaw0BNZUo",
        """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAHsl3r31qRZ0Z2eWbsA7KbvQTa7V
wPu0hoyYNb0qDsBxnyokBAYUjkDm8TLvBkvOcdWtj6eB5dNw8yn6rN4QnQ==
-----END PUBLIC KEY-----
""",
    ),
    "EdDSA": (
        "EB-rzRyPxhHPPFbj3P0rj1AMcGrq0jsSwW7aygAZFuI",
        """-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA0+3pk2vvj+6GjJt/aYjIyFY0wkHy9yL7H7bbTCatlfM=
-----END PUBLIC KEY-----
""",
    ),
}

# RFC 7638 §3.1: this RSA key's SHA-256 thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qvzq"
    "Y368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0"
    "fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _b64int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _pem_key(pem: str, tmp_path: Path) -> object:
    path = tmp_path / "key.pem"
    path.write_text(pem)
    return load_public_key_pem(path)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_kids_are_unchanged(name, tmp_path):
    """Existing keys keep their kid: tokens already issued still name a published key."""
    kid, pem = PINNED[name]
    public = _pem_key(pem, tmp_path)
    assert thumbprint(public) == kid
    assert PublicKey.from_pem(tmp_path / "key.pem").kid == kid


def test_thumbprint_of_the_rfc_7638_example():
    public = rsa.RSAPublicNumbers(e=65537, n=_b64int(RFC7638_N)).public_key()
    assert thumbprint(public) == RFC7638_THUMBPRINT


def _short_coordinate_ec_key() -> ec.EllipticCurvePrivateKey:
    while True:
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        if min(numbers.x, numbers.y) < 2**248:
            return key


@pytest.mark.parametrize(
    "make",
    [
        lambda: generate_private_key("RS256"),
        lambda: rsa.generate_private_key(public_exponent=3, key_size=2048),
        lambda: generate_private_key("ES256"),
        _short_coordinate_ec_key,
        lambda: generate_private_key("EdDSA"),
    ],
    ids=["rsa", "rsa-e3", "p256", "p256-short-coordinate", "ed25519"],
)
def test_thumbprint_and_jwk_agree_with_jwcrypto(make):
    """An independent implementation computes the same kid and reads the same key back."""
    for _ in range(5):
        public = make().public_key()
        theirs = jwcrypto_jwk.JWK.from_pyca(public)
        assert thumbprint(public) == theirs.thumbprint()
        ours = public_jwk(public)
        expected = theirs.export_public(as_dict=True)
        assert ours == {k: expected[k] for k in ours}
        assert jwcrypto_jwk.JWK(**ours).thumbprint() == thumbprint(public)


def test_jwks_document_shape(tmp_path):
    """Members in the order the JWKS always had; nothing private; PyJWT reads each key."""
    store = KeyStore(tmp_path)
    keys = [store.add(alg) for alg in ("RS256", "ES256", "EdDSA")]
    document = jwks(keys)
    assert list(document) == ["keys"]
    members = [list(entry) for entry in document["keys"]]
    assert members == [
        ["kty", "n", "e", "kid", "use", "alg"],
        ["kty", "crv", "x", "y", "kid", "use", "alg"],
        ["kty", "crv", "x", "kid", "use", "alg"],
    ]
    for key, entry in zip(keys, document["keys"], strict=True):
        assert (entry["kid"], entry["use"], entry["alg"]) == (key.kid, "sig", key.algorithm)
        assert not jwcrypto_jwk.JWK(**entry).has_private
        token = jwt.encode({"sub": "x"}, key.private_key, algorithm=key.algorithm)
        jwt.decode(token, jwt.PyJWK(entry).key, algorithms=[key.algorithm])
    json.dumps(document)  # plain JSON, as served


def test_parse_jwks_reads_back_what_jwks_writes(tmp_path):
    store = KeyStore(tmp_path)
    keys = [store.add(alg) for alg in ("RS256", "ES256", "EdDSA")]
    parsed = parse_jwks(json.loads(json.dumps(jwks(keys))))
    assert {kid: (k.kid, k.algorithm) for kid, k in parsed.items()} == {
        k.kid: (k.kid, k.algorithm) for k in keys
    }
    for key in keys:
        token = jwt.encode({"sub": "x"}, key.private_key, algorithm=key.algorithm)
        jwt.decode(token, parsed[key.kid].key, algorithms=[key.algorithm])


def test_parse_jwks_skips_unusable_entries(tmp_path):
    good = KeyStore(tmp_path).add("RS256")
    entry = good.public().jwk()
    document = {
        "keys": [
            {**entry, "kid": "enc", "use": "enc"},
            {k: v for k, v in entry.items() if k != "kid"},
            {"kty": "nope", "kid": "bad"},
            entry,
        ]
    }
    parsed = parse_jwks(document)
    assert set(parsed) == {good.kid}
    assert parsed[good.kid].algorithm == "RS256"
    with pytest.raises(AttributeError):
        parse_jwks(["not", "a", "jwks"])


def test_signing_key_and_public_key_agree(tmp_path):
    key = KeyStore(tmp_path).add("ES256")
    (tmp_path / "public.pem").write_bytes(public_pem(key.private_key))
    from_pem = PublicKey.from_pem(tmp_path / "public.pem")
    assert (from_pem.kid, from_pem.algorithm) == (key.kid, "ES256")
    assert key.public().kid == key.kid == thumbprint(key.private_key.public_key())
    assert algorithm_for(key.private_key) == algorithm_for(key.public().key) == "ES256"
    assert SigningKey.from_private_key(key.private_key) == key


def test_keyring_lifecycle(tmp_path):
    """rotate signs at once; a staged key is only published until activated; retire unpublishes."""
    from auth_server.keyring import KeyRing

    ring = KeyRing(str(tmp_path), algorithm="ES256")
    first = ring.rotate()
    assert ring.current().kid == first.kid
    staged = ring.rotate(stage=True)
    assert staged.algorithm == "ES256"
    assert ring.current().kid == first.kid
    assert {k.kid for k in ring.keys()} == {first.kid, staged.kid}
    assert sorted(ring.describe(), key=lambda d: str(d["kid"])) == sorted(
        [
            {"kid": first.kid, "alg": "ES256", "current": True},
            {"kid": staged.kid, "alg": "ES256", "current": False},
        ],
        key=lambda d: str(d["kid"]),
    )
    ring.activate(staged.kid)
    assert ring.current().kid == staged.kid
    with pytest.raises(ValueError, match="current signing key"):
        ring.retire(staged.kid)
    ring.retire(first.kid)
    assert [k.kid for k in ring.keys()] == [staged.kid]
    assert ring.find(first.kid) is None
    with pytest.raises(LookupError):
        ring.activate(first.kid)
    with pytest.raises(LookupError):
        ring.retire("no-such-kid")


def test_first_staged_key_signs_anyway(tmp_path):
    """With no signing key yet, even a staged key becomes the signing key."""
    from auth_server.keyring import KeyRing

    ring = KeyRing(str(tmp_path))
    key = ring.rotate(stage=True)
    assert ring.describe() == [{"kid": key.kid, "alg": "RS256", "current": True}]
