"""Which key signs, which are published: the auth server's view of its keys folder.

The lifecycle: ``rotate`` adds a key that signs at once (or, with ``stage``, is only
published until ``activate``); older keys stay published, so their tokens still verify,
until ``retire`` takes them out of the JWKS. The folder format, kids and JWKs are
``shared.keys``.

Keys are parsed once and cached; a cheap ``stat`` of the keys folder per use notices
``auth-server keys rotate`` / ``retire`` run by another process, so no restart is needed.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from shared.errors import ServiceUnavailable
from shared.keys import KeyStore, SigningKey


class KeyRing:
    def __init__(self, directory: str, algorithm: str = "RS256", generate: bool = False) -> None:
        self.store = KeyStore(directory)
        self.algorithm = algorithm
        self.generate = generate
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._current: SigningKey | None = None
        self._keys: list[SigningKey] = []

    def _fingerprint(self) -> tuple[int, int]:
        try:
            dir_mtime = os.stat(self.store.directory).st_mtime_ns
        except FileNotFoundError:
            return (0, 0)
        try:
            cur_mtime = os.stat(self.store.directory / "current").st_mtime_ns
        except FileNotFoundError:
            cur_mtime = 0
        return (dir_mtime, cur_mtime)

    def _refresh(self) -> None:
        stamp = self._fingerprint()
        if stamp == self._stamp and self._current is not None:
            return
        with self._lock:
            stamp = self._fingerprint()
            if stamp == self._stamp and self._current is not None:
                return
            keys = self.store.keys()
            if not keys and self.generate:
                self.store.add(self.algorithm)
                keys = self.store.keys()
                stamp = self._fingerprint()
            self._keys = keys
            self._current = self.store.current()
            self._stamp = stamp

    def current(self) -> SigningKey:
        self._refresh()
        if self._current is None:
            raise ServiceUnavailable(
                f"No signing key in {self.store.directory}; run `auth-server keys rotate`."
            )
        return self._current

    def keys(self) -> list[SigningKey]:
        self._refresh()
        return list(self._keys)

    def find(self, kid: str) -> SigningKey | None:
        return next((k for k in self.keys() if k.kid == kid), None)

    # The lifecycle (the CLI): these act on the folder, which every process then notices.

    def rotate(self, stage: bool = False) -> SigningKey:
        """A new key that signs from now on or, staged, is only published for now."""
        return self.store.add(self.algorithm, activate=not stage)

    def activate(self, kid: str) -> None:
        """Sign with a published key (``LookupError`` if there is none with that kid)."""
        self.store.activate(kid)

    def retire(self, kid: str) -> None:
        """Unpublish a key (``ValueError`` for the signing key, ``LookupError`` if unknown)."""
        self.store.retire(kid)

    def describe(self) -> list[dict[str, object]]:
        """``{kid, alg, current}`` for each published key, read from the folder now."""
        current = self.store.current()
        current_kid = current.kid if current is not None else None
        return [
            {"kid": k.kid, "alg": k.algorithm, "current": k.kid == current_kid}
            for k in self.store.keys()
        ]

    def inventory(self) -> list[dict[str, object]]:
        """Every key the folder holds, for the console, newest first: ``kid``, ``alg``,
        ``state`` and ``created`` (the key file's time, UTC).

        ``state``: ``active`` (signs new tokens), ``staged`` (published, newer than the
        active key: waiting for ``activate``), ``previous`` (published, older: still
        verifies the tokens it signed) or ``retired`` (out of the JWKS).
        """
        directory = self.store.directory
        current = self.store.current()
        current_created = _created(directory, current.kid) if current is not None else None
        keys: list[dict[str, object]] = []
        for key in self.store.keys():
            created = _created(directory, key.kid)
            if current is not None and key.kid == current.kid:
                state = "active"
            elif current_created is not None and created is not None and created > current_created:
                state = "staged"
            else:
                state = "previous"
            keys.append({"kid": key.kid, "alg": key.algorithm, "state": state, "created": created})
        retired = directory / "retired"
        for key in KeyStore(retired).keys():
            created = _created(retired, key.kid)
            keys.append(
                {"kid": key.kid, "alg": key.algorithm, "state": "retired", "created": created}
            )
        epoch = datetime.fromtimestamp(0, UTC)
        keys.sort(key=lambda k: k["created"] if isinstance(k["created"], datetime) else epoch)
        return keys[::-1]


def _created(directory: Path, kid: str) -> datetime | None:
    """When the key file was written (key files are never rewritten)."""
    try:
        return datetime.fromtimestamp((directory / f"{kid}.pem").stat().st_mtime, UTC)
    except FileNotFoundError:
        return None
