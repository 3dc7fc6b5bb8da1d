"""The revocation feed's one shared rule: how it names a user without revealing the id."""

from __future__ import annotations

import hashlib


def subject_hash(sub: str) -> str:
    """SHA-256 hex of a ``sub`` (what a ``sub`` entry publishes; the call API hashes the
    token's ``sub`` the same way to compare). Lone surrogates, which a JSON token may carry,
    hash instead of raising."""
    return hashlib.sha256(sub.encode("utf-8", "surrogatepass")).hexdigest()
