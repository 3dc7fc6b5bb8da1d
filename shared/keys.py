"""Signing keys: generation, loading, RFC 7638 thumbprints and JWK export.

The auth server keeps one private PEM file per key in ``AUTH_KEYS_DIR`` named
``<kid>.pem``; the file ``current`` names the key that signs new tokens. Retired keys
move to ``retired/`` and leave the JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)

SUPPORTED_ALGORITHMS = ("RS256", "ES256", "EdDSA")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def public_jwk(public_key: PublicKeyTypes) -> dict[str, str]:
    """The public members of a JWK (no kid/use/alg)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        nums = public_key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(nums.x.to_bytes(32, "big")),
            "y": _b64(nums.y.to_bytes(32, "big")),
        }
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}
    raise ValueError(f"unsupported key type {type(public_key).__name__}")


def thumbprint(public_key: PublicKeyTypes) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), used as the ``kid``."""
    jwk = public_jwk(public_key)
    required = {
        "RSA": ("e", "kty", "n"),
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
    }
    members = {k: jwk[k] for k in required[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())


def algorithm_for(key: PrivateKeyTypes | PublicKeyTypes) -> str:
    """The JWS algorithm of a private or public key."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RS256"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ES256"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "EdDSA"
    raise ValueError(f"unsupported key type {type(key).__name__}")


def generate_private_key(algorithm: str = "RS256") -> PrivateKeyTypes:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported algorithm {algorithm!r}; use one of {SUPPORTED_ALGORITHMS}")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private_key: Any

    def jwk(self) -> dict[str, str]:
        return {
            **public_jwk(self.private_key.public_key()),
            "kid": self.kid,
            "use": "sig",
            "alg": self.algorithm,
        }


class KeyStore:
    """The private keys in a folder; ``current`` names the signing key."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _load(self, path: Path) -> SigningKey:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        kid = thumbprint(key.public_key())
        return SigningKey(kid=kid, algorithm=algorithm_for(key), private_key=key)

    def keys(self) -> list[SigningKey]:
        if not self.directory.is_dir():
            return []
        return [self._load(p) for p in sorted(self.directory.glob("*.pem"))]

    def current(self) -> SigningKey | None:
        marker = self.directory / "current"
        if marker.is_file():
            path = self.directory / f"{marker.read_text().strip()}.pem"
            if path.is_file():
                return self._load(path)
        keys = self.keys()
        return keys[-1] if keys else None

    def add(self, algorithm: str = "RS256", activate: bool = True) -> SigningKey:
        """Generate a key, write it (mode 0600) and, unless staged, make it the signing key."""
        self.directory.mkdir(parents=True, exist_ok=True)
        key = generate_private_key(algorithm)
        kid = thumbprint(key.public_key())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self.directory / f"{kid}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        if activate or self.current() is None or not (self.directory / "current").is_file():
            self._set_current(kid)
        return SigningKey(kid=kid, algorithm=algorithm, private_key=key)

    def _set_current(self, kid: str) -> None:
        tmp = self.directory / "current.tmp"
        tmp.write_text(kid + "\n")
        tmp.replace(self.directory / "current")  # atomic: readers never see a half-written file

    def activate(self, kid: str) -> None:
        if not (self.directory / f"{kid}.pem").is_file():
            raise LookupError(f"no key {kid} in {self.directory}")
        self._set_current(kid)

    def retire(self, kid: str) -> None:
        """Move a key out of the JWKS. The signing key cannot be retired."""
        current = self.current()
        if current is not None and current.kid == kid:
            raise ValueError(f"{kid} is the current signing key; rotate first")
        path = self.directory / f"{kid}.pem"
        if not path.is_file():
            raise LookupError(f"no key {kid} in {self.directory}")
        retired = self.directory / "retired"
        retired.mkdir(exist_ok=True)
        path.rename(retired / path.name)


def load_public_key_pem(path: str | os.PathLike[str]) -> PublicKeyTypes:
    return serialization.load_pem_public_key(Path(path).read_bytes())


def public_pem(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
