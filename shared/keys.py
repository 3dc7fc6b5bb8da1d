"""Signing keys, in one place: generation, the keys folder, kids, JWK and JWKS.

- A key's ``kid`` is its RFC 7638 JWK thumbprint (SHA-256). PyJWT has no thumbprint, so
  the JWK export and the thumbprint both come from joserfc (already installed: Authlib
  is built on it); PyJWT signs and verifies, and reads the JWKS on the call API's side.
- The auth server keeps one private PEM file per key in ``AUTH_KEYS_DIR`` named
  ``<kid>.pem``; the file ``current`` names the key that signs new tokens (the others are
  staged or still verifying older tokens). Retired keys move to ``retired/`` and leave
  the JWKS. ``KeyStore`` is the only code that reads or writes that folder.
- ``jwks()`` writes the JWKS document the auth server publishes and ``parse_jwks()``
  reads it back on the call API's side.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    PrivateKeyTypes,
    PublicKeyTypes,
)
from joserfc import jwk as jose_jwk

SUPPORTED_ALGORITHMS = ("RS256", "ES256", "EdDSA")


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


def _jose_key(public_key: PublicKeyTypes) -> jose_jwk.RSAKey | jose_jwk.ECKey | jose_jwk.OKPKey:
    if isinstance(public_key, rsa.RSAPublicKey):
        return jose_jwk.RSAKey.import_key(public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return jose_jwk.ECKey.import_key(public_key)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return jose_jwk.OKPKey.import_key(public_key)
    raise ValueError(f"unsupported key type {type(public_key).__name__}")


def public_jwk(public_key: PublicKeyTypes) -> dict[str, Any]:
    """The public members of a JWK (no kid/use/alg), ``kty`` first."""
    members = dict(_jose_key(public_key).as_dict(private=False))
    return {"kty": members.pop("kty"), **members}


def thumbprint(public_key: PublicKeyTypes) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), used as the ``kid``."""
    return _jose_key(public_key).thumbprint()


@dataclass(frozen=True)
class PublicKey:
    """A key that verifies tokens: its ``kid``, JWS algorithm and the public key itself."""

    kid: str
    algorithm: str
    key: Any

    @classmethod
    def from_pem(cls, path: str | os.PathLike[str]) -> PublicKey:
        """A PEM public key; its kid is its thumbprint, as the auth server computes it."""
        public = load_public_key_pem(path)
        return cls(kid=thumbprint(public), algorithm=algorithm_for(public), key=public)

    def jwk(self) -> dict[str, Any]:
        return {**public_jwk(self.key), "kid": self.kid, "use": "sig", "alg": self.algorithm}


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private_key: Any

    @classmethod
    def from_private_key(cls, private_key: Any) -> SigningKey:
        return cls(
            kid=thumbprint(private_key.public_key()),
            algorithm=algorithm_for(private_key),
            private_key=private_key,
        )

    def public(self) -> PublicKey:
        return PublicKey(self.kid, self.algorithm, self.private_key.public_key())


def jwks(keys: Iterable[SigningKey]) -> dict[str, Any]:
    """The JWKS document (RFC 7517) publishing these keys."""
    return {"keys": [key.public().jwk() for key in keys]}


def parse_jwks(document: Any) -> dict[str, PublicKey]:
    """The signing keys of a JWKS document by kid.

    Entries for another ``use``, without a kid, or that PyJWT cannot read are skipped; a
    document that is not a JWKS at all raises (``AttributeError``, ``TypeError``, ``ValueError``).
    """
    keys: dict[str, PublicKey] = {}
    for item in document.get("keys", []):
        if item.get("use", "sig") != "sig" or not item.get("kid"):
            continue
        try:
            parsed = jwt.PyJWK(item)
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            continue
        keys[item["kid"]] = PublicKey(item["kid"], parsed.algorithm_name, parsed.key)
    return keys


def _file_identity(path: Path) -> tuple[int, int, int, int]:
    stat = path.stat()
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _load_signing_key(path: Path, identity: tuple[int, int, int, int]) -> SigningKey:
    """Parsing a PEM private key costs milliseconds (RSA's checks); key files are named by
    their thumbprint and never rewritten, so a parse is reused while the file's identity
    (device, inode, mtime, size) is unchanged."""
    return SigningKey.from_private_key(
        serialization.load_pem_private_key(path.read_bytes(), password=None)
    )


class KeyStore:
    """The private keys in a folder; ``current`` names the signing key."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _load(self, path: Path) -> SigningKey:
        return _load_signing_key(path.resolve(), _file_identity(path))

    def keys(self) -> list[SigningKey]:
        """The published keys (current, staged, and older ones not yet retired)."""
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
        """Generate a key, write it (mode 0600) and, unless staged, make it the signing key.

        A staged key still becomes the signing key when there is none yet.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        key = SigningKey.from_private_key(generate_private_key(algorithm))
        pem = key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self.directory / f"{key.kid}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        if activate or self.current() is None or not (self.directory / "current").is_file():
            self._set_current(key.kid)
        return key

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
