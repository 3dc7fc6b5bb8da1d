"""What the auth server revoked, known locally: the call API's copy of the revocation feed.

The call API validates JWT access tokens with the public key alone, so a revoked token
would work until it expires. Instead each worker process keeps the auth server's
revocation feed (``GET /oauth/revocations?after=<cursor>``, ``CALL_REVOCATION_URL``) in
memory, polled by a background thread every ``CALL_REVOCATION_POLL_INTERVAL`` seconds:
a revocation reaches every worker within about one interval, and checking a token is a
few dictionary lookups — no call to the auth server per request.

- The thread starts with the first request a process serves (after gunicorn forks), and
  that request waits for the first poll (at most ``CALL_REVOCATION_TIMEOUT`` seconds), so
  a fresh worker never serves before it knows what was revoked while it was not running.
- When the auth server is unreachable the call API keeps serving with what it last knew
  (like the JWKS cache) and ``/readyz`` reports how stale that is.
- Entries are kept until every token they cover has expired (their ``expires_at`` plus
  ``CALL_TOKEN_LEEWAY``), then dropped.
- The feed's ids are its cursor, but a transaction can commit entry 11 after a poll has
  already seen entry 12; so each poll asks again from the cursor it had
  :data:`REREAD_WINDOW` seconds ago (entries are idempotent; a fresh process reads from 0
  for that long). A cursor that went down means a new auth database: start again from 0.
- ``CALL_REVOCATION_POLL_INTERVAL=0`` turns all of this off: revoked tokens then work at
  the call API until they expire.

The feed also carries one order that is not a token revocation: ``end_calls`` (a user
removed an app on the auth server's account page and asked to hang up its live calls;
the entry's ``value`` is the hash of the user's ``sub``, its ``client_id`` the app). The
poll that first sees such an entry ends, through ``calls.end_call``, the live calls of that
client whose subject hashes to the value and that started before the entry's
``issued_before``, with ``end_reason: revoked`` (event and webhook as for any hang-up).
Every worker's poller, and each re-read, may see the entry: ending an ended call changes
nothing, and a process remembers the entries it carried out. One that fails (the database
away) is tried again at the next poll, until it expires.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from flask import Flask, current_app, has_app_context
from sqlalchemy import select

from shared.errors import ObjectDoesNotExist
from shared.revocation import subject_hash

from . import calls
from .extensions import db
from .metrics import REVOCATION_POLLS
from .models import Call

log = logging.getLogger("clickcall.call_api")

# Seconds behind the cursor each poll reads again, for entries whose transaction committed
# after a later entry's (longer than any auth-server transaction that records one).
REREAD_WINDOW = 30.0
# Pages read in one poll at most (the feed's pages hold a few hundred entries).
MAX_PAGES = 100

Fetch = Callable[[int], Mapping[str, Any]]


@dataclass(frozen=True)
class Revoked:
    """An immutable snapshot, replaced whole by each poll that changes something, so
    request threads read it without a lock.

    ``jtis`` and ``grants`` map a value to when its entry may be dropped; ``subjects``
    (SHA-256 of ``sub``) and ``clients`` map to ``(issued_before, drop_at)``: tokens issued
    before ``issued_before`` are revoked.
    """

    jtis: dict[str, float] = field(default_factory=dict)
    grants: dict[str, float] = field(default_factory=dict)
    subjects: dict[str, tuple[float, float]] = field(default_factory=dict)
    clients: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The soonest drop time of any entry (nothing to prune before it).
    earliest: float = float("inf")

    def __len__(self) -> int:
        return len(self.jtis) + len(self.grants) + len(self.subjects) + len(self.clients)

    def covers(self, claims: Mapping[str, Any]) -> bool:
        """Whether a token with these (verified) claims is revoked."""
        jti = claims.get("jti")
        if isinstance(jti, str) and jti in self.jtis:
            return True
        grant_id = claims.get("grant_id")
        if isinstance(grant_id, str) and grant_id in self.grants:
            return True
        if not (self.subjects or self.clients):
            return False
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            iat = float("-inf")  # unusable: as old as can be
        sub = claims.get("sub")
        if self.subjects and isinstance(sub, str):
            hit = self.subjects.get(subject_hash(sub))
            if hit is not None and iat < hit[0]:
                return True
        client_id = claims.get("client_id")
        if self.clients and isinstance(client_id, str):
            hit = self.clients.get(client_id)
            if hit is not None and iat < hit[0]:
                return True
        return False


@dataclass(frozen=True)
class EndCalls:
    """An ``end_calls`` entry: hang up the live calls of ``client_id`` whose subject hashes
    to ``subject_hash`` and that started before ``started_before`` (Unix seconds)."""

    id: int
    subject_hash: str
    client_id: str
    started_before: float
    expires_at: float


# Carries out an ``end_calls`` entry; returns the ``token_call`` of each call it ended.
EndCallsHandler = Callable[[EndCalls], list[str]]


class FeedError(Exception):
    """The feed could not be read (network, status, or an answer that is not a feed)."""


class RevocationFeed:
    """One process's copy of the auth server's revocation feed, kept fresh by a thread."""

    def __init__(
        self,
        url: str | None,
        interval: float,
        timeout: float,
        leeway: float = 0,
        fetch: Fetch | None = None,
        reread_window: float = REREAD_WINDOW,
        end_calls: EndCallsHandler | None = None,
    ) -> None:
        self.url = url or None
        self.interval = interval
        self.timeout = timeout
        self.leeway = leeway
        self.reread_window = reread_window
        self._fetch_page = fetch or self._http_fetch
        self.revoked = Revoked()
        self.cursor = 0
        # (monotonic time, cursor) of recent successful polls: where to read again from.
        # It starts as if cursor 0 had been read long ago: for its first reread_window
        # seconds a process reads from 0, which catches entries whose transaction was
        # still open when it started.
        self._history: deque[tuple[float, int]] = deque([(float("-inf"), 0)])
        self.last_success: float | None = None  # monotonic
        self.last_success_at: float | None = None  # wall clock, for /readyz
        self.last_error: str | None = None
        self._failing = False
        self._poll_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._pid: int | None = None
        self._first_poll = threading.Event()
        self._stop = threading.Event()
        self._session: requests.Session | None = None
        # end_calls entries: the handler (bound to the app at start() when not given), the
        # ones still to carry out, and the ids of those done (until they expire).
        self.end_calls_handler = end_calls
        self._end_calls_pending: dict[int, EndCalls] = {}
        self._end_calls_done: dict[int, float] = {}
        self._end_calls_failing = False

    def bind(self, app: Flask) -> None:
        """Carry out ``end_calls`` entries on ``app``'s database (held weakly: a feed never
        keeps its app alive). ``start()`` binds the app of the request that starts it."""
        self.end_calls_handler = _app_handler(weakref.ref(app))

    @property
    def enabled(self) -> bool:
        return self.interval > 0 and self.url is not None

    # -- the request path ---------------------------------------------------------------

    def is_revoked(self, claims: Mapping[str, Any]) -> bool:
        """Whether the auth server revoked this token (as of the last poll)."""
        if not self.enabled:
            return False
        if self._pid != os.getpid():
            self.start()
        return self.revoked.covers(claims)

    def start(self) -> None:
        """Start this process's polling thread (once per process: after a fork the parent's
        thread is gone) and wait for its first poll, at most the fetch timeout."""
        if not self.enabled:
            return
        if self.end_calls_handler is None and has_app_context():
            self.bind(current_app._get_current_object())  # type: ignore[attr-defined]
        with self._start_lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._first_poll = threading.Event()
                self._session = None
                thread = threading.Thread(
                    target=_poll_forever,
                    args=(weakref.ref(self), self._pid),
                    name="revocation-feed",
                    daemon=True,
                )
                thread.start()
        self._first_poll.wait(self.timeout + 1)

    def stop(self) -> None:
        self._stop.set()

    # -- polling ------------------------------------------------------------------------

    def _http_fetch(self, after: int) -> Mapping[str, Any]:
        assert self.url is not None
        if self._session is None:
            self._session = requests.Session()
            weakref.finalize(self, self._session.close)  # its keep-alive socket, when unused
        try:
            response = self._session.get(
                self.url,
                params={"after": after},
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise FeedError(type(exc).__name__) from None
        if not isinstance(body, dict):
            raise FeedError("not a JSON object")
        return body

    def poll(self) -> bool:
        """Read what is new in the feed; ``False`` (and the old state kept) on failure."""
        with self._poll_lock:
            try:
                self._poll()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                self.last_error = str(exc) if isinstance(exc, FeedError) else type(exc).__name__
                REVOCATION_POLLS.labels("error").inc()
                if not self._failing:  # once per outage, not every few seconds
                    log.warning(
                        "revocation feed %s unreachable (%s): serving with what was last known",
                        self.url,
                        self.last_error,
                    )
                self._failing = True
                return False
            finally:
                self._first_poll.set()
            self._carry_out_end_calls()
        REVOCATION_POLLS.labels("ok").inc()
        if self._failing:
            log.info("revocation feed %s reachable again", self.url)
        self._failing = False
        self.last_error = None
        self.last_success = time.monotonic()
        self.last_success_at = time.time()
        return True

    def _poll(self) -> None:
        now = time.monotonic()
        while len(self._history) >= 2 and self._history[1][0] <= now - self.reread_window:
            self._history.popleft()
        after = self._history[0][1]
        entries: list[Mapping[str, Any]] = []
        reset = False
        for _ in range(MAX_PAGES):
            body = self._fetch_page(after)
            page, cursor, more = _parse(body)
            if cursor < after:  # the feed went back: a new database behind it
                reset, after, entries = True, 0, []
                continue
            entries.extend(page)
            after = cursor
            if not more:
                break
        state = Revoked() if reset else self.revoked
        if reset:
            log.warning("revocation feed %s was reset: reading it again from 0", self.url)
            self._history = deque([(float("-inf"), 0)])
            self._end_calls_pending.clear()
            self._end_calls_done.clear()  # a new database numbers its entries again
        drop_before = time.time() - self.leeway
        self.revoked = _apply(state, entries, drop_before)
        self.cursor = after
        self._history.append((now, after))
        for order in _end_calls_entries(entries, drop_before):
            if order.id not in self._end_calls_done:
                self._end_calls_pending[order.id] = order

    def _carry_out_end_calls(self) -> None:
        """Carry out the pending ``end_calls`` entries (oldest first). A failure leaves the
        entry and the ones after it for the next poll; it never fails the poll."""
        drop_before = time.time() - self.leeway
        for done in [i for i, until in self._end_calls_done.items() if until < drop_before]:
            del self._end_calls_done[done]
        for late in [i for i, o in self._end_calls_pending.items() if o.expires_at < drop_before]:
            del self._end_calls_pending[late]
        handler = self.end_calls_handler
        if handler is None:
            return
        for order_id in sorted(self._end_calls_pending):
            order = self._end_calls_pending[order_id]
            try:
                ended = handler(order)
            except Exception as exc:  # noqa: BLE001 - tried again at the next poll
                if not self._end_calls_failing:
                    log.warning(
                        "could not end the live calls of client %s (revocation feed entry "
                        "%d): %s; trying again at the next poll",
                        order.client_id,
                        order.id,
                        type(exc).__name__,
                    )
                self._end_calls_failing = True
                return
            self._end_calls_failing = False
            if ended:
                log.info(
                    "ended %d live call(s) of client %s: the user revoked its access "
                    "(revocation feed entry %d)",
                    len(ended),
                    order.client_id,
                    order.id,
                )
            self._end_calls_done[order_id] = order.expires_at
            del self._end_calls_pending[order_id]

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: how fresh the copy is (reported, never a reason to be unready:
        serving on what was last known beats refusing everyone while the auth server is
        away)."""
        if not self.enabled:
            return {"status": "disabled"}
        age = None if self.last_success is None else round(time.monotonic() - self.last_success, 1)
        if age is None:
            status = "starting" if self.last_error is None else "stale"
        else:
            fresh = self.last_error is None and age <= 2 * self.interval + self.timeout
            status = "ok" if fresh else "stale"
        out: dict[str, Any] = {
            "status": status,
            "seconds_since_update": age,
            "cursor": self.cursor,
            "entries": len(self.revoked),
        }
        if self.last_error is not None:
            out["last_error"] = self.last_error
        return out


def _poll_forever(ref: weakref.ReferenceType[RevocationFeed], pid: int) -> None:
    """The polling thread. It holds the feed only weakly: once its app is gone it ends."""
    while True:
        feed = ref()
        if feed is None or feed._stop.is_set() or feed._pid != pid:
            return
        started = time.monotonic()
        feed.poll()
        wait = max(0.0, feed.interval - (time.monotonic() - started))
        stop = feed._stop
        del feed
        if stop.wait(wait):
            return


def _parse(body: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], int, bool]:
    entries = body.get("revocations")
    cursor = body.get("cursor")
    if not isinstance(entries, list) or isinstance(cursor, bool) or not isinstance(cursor, int):
        raise FeedError("not a revocation feed")
    return [e for e in entries if isinstance(e, dict)], cursor, body.get("more") is True


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _apply(state: Revoked, entries: list[Mapping[str, Any]], drop_before: float) -> Revoked:
    """A new snapshot: ``state`` plus ``entries``, without what expired before
    ``drop_before``; ``state`` itself when nothing changes (the usual poll: no copy)."""
    jtis: dict[str, float] = {}
    grants: dict[str, float] = {}
    subjects: dict[str, tuple[float, float]] = {}
    clients: dict[str, tuple[float, float]] = {}
    for entry in entries:
        kind, value = entry.get("kind"), entry.get("value")
        expires_at = _number(entry.get("expires_at"))
        if not isinstance(value, str) or expires_at is None or expires_at < drop_before:
            continue
        if kind in ("jti", "grant"):
            new, known = (jtis, state.jtis) if kind == "jti" else (grants, state.grants)
            until = max(expires_at, new.get(value, expires_at), known.get(value, expires_at))
            if known.get(value) != until:
                new[value] = until
        elif kind in ("sub", "client"):
            issued_before = _number(entry.get("issued_before"))
            if issued_before is None:
                continue
            pair = (subjects, state.subjects) if kind == "sub" else (clients, state.clients)
            was = pair[0].get(value) or pair[1].get(value) or (issued_before, expires_at)
            merged = (max(was[0], issued_before), max(was[1], expires_at))
            if pair[1].get(value) != merged:
                pair[0][value] = merged
        # end_calls is an order, not a revocation (RevocationFeed carries it out); unknown
        # kinds come from a newer auth server: skipped, not an error.
    changed = jtis or grants or subjects or clients
    if not changed and state.earliest >= drop_before:
        return state
    jtis = {**state.jtis, **jtis}
    grants = {**state.grants, **grants}
    subjects = {**state.subjects, **subjects}
    clients = {**state.clients, **clients}
    for simple in (jtis, grants):
        for value in [v for v, until in simple.items() if until < drop_before]:
            del simple[value]
    for bounded in (subjects, clients):
        for value in [v for v, (_, until) in bounded.items() if until < drop_before]:
            del bounded[value]
    earliest = min(
        [*jtis.values(), *grants.values()]
        + [until for _, until in (*subjects.values(), *clients.values())],
        default=float("inf"),
    )
    return Revoked(jtis, grants, subjects, clients, earliest)


def _end_calls_entries(entries: list[Mapping[str, Any]], drop_before: float) -> list[EndCalls]:
    """The well-formed, unexpired ``end_calls`` entries among ``entries``."""
    found = []
    for entry in entries:
        if entry.get("kind") != "end_calls":
            continue
        entry_id, value, client_id = entry.get("id"), entry.get("value"), entry.get("client_id")
        started_before = _number(entry.get("issued_before"))
        expires_at = _number(entry.get("expires_at"))
        if (
            isinstance(entry_id, bool)
            or not isinstance(entry_id, int)
            or not isinstance(value, str)
            or not isinstance(client_id, str)
            or started_before is None
            or expires_at is None
            or expires_at < drop_before
        ):
            continue
        found.append(EndCalls(entry_id, value, client_id, started_before, expires_at))
    return found


def end_calls(order: EndCalls, policy: calls.Policy) -> list[str]:
    """Hang up (``end_reason: revoked``) the live calls ``order`` names; their
    ``token_call``. Subjects are matched by their hash, as the feed names no user."""
    started_before = datetime.fromtimestamp(order.started_before, UTC)
    live = db.session.execute(
        select(Call.subject, Call.token_call)
        .where(
            Call.client_id == order.client_id,
            Call.status == "ongoing",
            Call.started_at < started_before,
        )
        .order_by(Call.id)
    ).all()
    db.session.commit()  # end the read transaction before each call's own
    ended = []
    for subject, token_call in live:
        if subject_hash(subject) != order.subject_hash:
            continue
        try:
            call = calls.end_call(token_call, policy, subject=subject, reason="revoked")
        except ObjectDoesNotExist:  # deleted meanwhile: nothing left to end
            continue
        if call.end_reason == "revoked":
            ended.append(token_call)
    return ended


def _app_handler(ref: weakref.ReferenceType[Flask]) -> EndCallsHandler:
    def handle(order: EndCalls) -> list[str]:
        app = ref()
        if app is None:
            return []
        with app.app_context():
            return end_calls(order, calls.Policy.from_config(app.config))

    return handle


def feed_from_config(config: Mapping[str, Any]) -> RevocationFeed:
    return RevocationFeed(
        config["CALL_REVOCATION_URL"],
        interval=config["CALL_REVOCATION_POLL_INTERVAL"],
        timeout=config["CALL_REVOCATION_TIMEOUT"],
        leeway=config["CALL_TOKEN_LEEWAY"],
    )
