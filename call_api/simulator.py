"""The simulator dialer: a stand-in phone system for development (``call-api simulator``).

It places no call and plays no audio. It is a client of the call API like any dialer —
no database access, no back door, nothing of ``call_api`` but this command's registration:
it gets an OAuth token (``client_credentials``, scope ``dialer``, HTTP Basic) at the token
endpoint named in ``$AUTH_ISSUER/.well-known/oauth-authorization-server``, claims queued
calls with ``POST /dialer/poll`` (a long poll that also renews its leases and tells it which
of its calls the app hung up) and reports what happens to each with
``POST /dialer/calls/<token_call>/events``. A real SIP dialer plugs into the same interface.

What happens to a call depends on its number, like the magic numbers of telephony test
accounts:

=================  ===================================================================
number             outcome
=================  ===================================================================
``+15005550006``   rings ``SIMULATOR_RING_SECONDS`` (1), answers, talks
                   ``SIMULATOR_TALK_SECONDS`` (3, at most the call's ``time_limit``),
                   hangs up → ``completed``
``+15005550007``   rings ``SIMULATOR_RING_SECONDS``, then busy → ``busy``
``+15005550008``   rings until the call's ``ring_timeout``, never answers → ``no-answer``
``+15005550009``   fails at once (no route) → ``failed``
any other number   rings ``SIMULATOR_RING_SECONDS``, answers, stays ``in-progress`` until
                   the app hangs up or the call's ``time_limit`` is reached (then
                   ``hangup`` → ``completed``)
=================  ===================================================================

A call whose ``ring_timeout`` is not longer than ``SIMULATOR_RING_SECONDS`` is never
answered: it ends ``no-answer`` when the timeout is reached, as a phone system would.

Each claimed call runs its script in a thread. When a poll lists a call in ``ended`` (the
app or an admin ended it, or it expired) its script stops at once and reports nothing more;
an event refused with 409 (``invalid_transition``, ``lease_lost``) or 404 drops the call.
Network errors, 5xx and 429 are retried with backoff (events are idempotent); an expired or
refused token is renewed. Configuration errors (bad client credentials, a client without
the ``dialer`` scope) stop the simulator with a message. SIGTERM or SIGINT stops it: the
calls it answered are hung up (``completed``), those still ringing fail (``failed``).
It prints one line per event on standard output, never a token or secret.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import click
import requests

from shared.cli import UsageProblem
from shared.config import env_str

ANSWERS = "+15005550006"
BUSY = "+15005550007"
NO_ANSWER = "+15005550008"
FAILS = "+15005550009"
TEST_NUMBERS = {
    ANSWERS: "rings, answers, talks, hangs up: completed",
    BUSY: "rings briefly, then busy: busy",
    NO_ANSWER: "rings until the call's ring_timeout: no-answer",
    FAILS: "fails at once: failed",
}

DIALER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # what POST /dialer/poll accepts
MAX_BATCH = 50  # the most calls one poll may claim
MAX_WAIT = 25.0  # the longest long poll the call API holds
DEFAULT_RING_TIMEOUT = 30  # a call's ring_timeout when it names none
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
CONNECT_TIMEOUT = 5.0
EVENT_TIMEOUT = 10.0
STOP_TIMEOUT = 3.0  # seconds each last event may take while stopping
REFRESH_MARGIN = 60.0  # renew a token this long before it expires (at most half its life)
FATAL_TOKEN_ERRORS = ("invalid_client", "invalid_scope", "unauthorized_client")
LIVE = ("queued", "ringing", "in-progress")


class Fatal(Exception):
    """A configuration problem retrying cannot fix: the simulator stops with this message."""


class Stopping(Exception):
    """The simulator is stopping, or the call's script was stopped."""


class Unavailable(Exception):
    """A transient failure (the auth server down, a 5xx): retried with backoff."""


@dataclass(frozen=True)
class Settings:
    client_id: str
    client_secret: str
    issuer: str
    api_url: str
    ring_seconds: float
    talk_seconds: float
    dialer_id: str
    max_calls: int = 20
    wait: float = 10.0


def default_dialer_id() -> str:
    host = re.sub(r"[^A-Za-z0-9._:-]", "-", socket.gethostname())[:80] or "host"
    return f"simulator-{host}-{os.getpid()}"


def _error_of(response: requests.Response) -> tuple[str, str]:
    """``(error, error_description)`` of an error response, whatever its body."""
    try:
        body = response.json()
    except ValueError:
        return f"http_{response.status_code}", response.text[:200]
    if not isinstance(body, dict):
        return f"http_{response.status_code}", ""
    return str(body.get("error", f"http_{response.status_code}")), str(
        body.get("error_description", "")
    )


class Simulator:
    """The poll loop, the token, and one script thread per claimed call."""

    def __init__(self, settings: Settings, out: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.fatal: str | None = None
        self.wait = min(settings.wait, MAX_WAIT)
        self._out = out or (lambda line: print(line, flush=True))
        self._print_lock = threading.Lock()
        self._local = threading.local()
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._token_endpoint: str | None = None
        self._active: dict[str, Script] = {}
        self._active_lock = threading.Lock()

    # --- output -------------------------------------------------------------------------

    def log(self, message: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        with self._print_lock:
            self._out(f"{now} simulator {self.settings.dialer_id}: {message}")

    def fail(self, message: str) -> None:
        """Stop everything: a configuration problem."""
        if self.fatal is None:
            self.fatal = message
        self.stop.set()

    # --- HTTP ---------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session  # type: ignore[no-any-return]

    def _discover(self) -> str:
        if self._token_endpoint is None:
            url = self.settings.issuer + "/.well-known/oauth-authorization-server"
            response = self._session().get(url, timeout=(CONNECT_TIMEOUT, EVENT_TIMEOUT))
            if response.status_code != 200:
                raise Unavailable(f"auth server metadata: HTTP {response.status_code}")
            endpoint = response.json().get("token_endpoint")
            if not isinstance(endpoint, str) or not endpoint:
                raise Fatal(f"The auth server's metadata at {url} names no token_endpoint.")
            self._token_endpoint = endpoint
        return self._token_endpoint

    def token(self) -> str:
        """A dialer access token, renewed before it expires (one request at a time)."""
        with self._token_lock:
            if self._token is not None and time.monotonic() < self._token_renew_at:
                return self._token
            endpoint = self._discover()
            response = self._session().post(
                endpoint,
                data={"grant_type": "client_credentials", "scope": "dialer"},
                auth=(self.settings.client_id, self.settings.client_secret),
                timeout=(CONNECT_TIMEOUT, EVENT_TIMEOUT),
            )
            if response.status_code != 200:
                error, description = _error_of(response)
                if error in FATAL_TOKEN_ERRORS:
                    raise Fatal(
                        f"The auth server refused the simulator's client "
                        f"{self.settings.client_id!r} ({error}: {description}) Check "
                        "DIALER_CLIENT_ID and DIALER_CLIENT_SECRET: the client needs the "
                        "client_credentials grant and the dialer scope."
                    )
                raise Unavailable(f"token endpoint: HTTP {response.status_code} {error}")
            body = response.json()
            lifetime = float(body.get("expires_in") or 300)
            self._token = str(body["access_token"])
            self._token_renew_at = time.monotonic() + max(
                1.0, lifetime - min(REFRESH_MARGIN, lifetime / 2)
            )
            self.log(f"got a dialer token (expires in {lifetime:g}s)")
            return self._token

    def _token_refused(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:
                self._token = None

    def post(
        self,
        path: str,
        body: dict[str, Any],
        timeout: float,
        cancelled: threading.Event | None = None,
        retry: bool = True,
    ) -> requests.Response:
        """POST ``body`` to the call API with a dialer token. Transient failures (network,
        5xx, 429, the auth server unreachable) are retried with backoff until it works,
        the simulator stops or ``cancelled`` is set (``Stopping``); a refused token is
        renewed. Returns every other response. ``retry=False``: one attempt, and
        ``Stopping`` if it fails."""
        attempt = 0
        refused = 0
        while True:
            if self.stop.is_set() and retry:
                raise Stopping()
            if cancelled is not None and cancelled.is_set() and retry:
                raise Stopping()
            try:
                token = self.token()
                response = self._session().post(
                    self.settings.api_url + path,
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=(CONNECT_TIMEOUT, timeout),
                )
                problem = None
                if response.status_code == 401:
                    self._token_refused(token)
                    refused += 1
                    if refused == 1:
                        continue  # a new token at once; a second refusal backs off
                    problem = "the call API refused a fresh token (HTTP 401)"
                elif response.status_code == 403:
                    error, description = _error_of(response)
                    raise Fatal(
                        f"The call API refused the simulator's token ({error}: {description})"
                    )
                elif response.status_code >= 500 or response.status_code == 429:
                    problem = f"the call API answered HTTP {response.status_code}"
                else:
                    return response
            except requests.ConnectionError as exc:
                url = exc.request.url if exc.request is not None else self.settings.api_url
                problem = f"cannot connect to {str(url).split('?')[0]}"
            except (requests.RequestException, Unavailable, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if not retry:
                raise Stopping()
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            self.log(f"{problem}; retrying in {delay:.1f}s")
            if self._sleep(delay, cancelled):
                raise Stopping()

    def _sleep(self, seconds: float, cancelled: threading.Event | None) -> bool:
        """Sleep ``seconds``; True (at once) when the simulator stops or ``cancelled`` is set."""
        end = time.monotonic() + seconds
        while not (self.stop.is_set() or (cancelled is not None and cancelled.is_set())):
            left = end - time.monotonic()
            if left <= 0:
                return False
            (cancelled or self.stop).wait(min(left, 0.1))
        return True

    # --- the poll loop ------------------------------------------------------------------

    def poll_loop(self) -> None:
        """Claim calls up to the free capacity; renew leases at least every
        ``lease_seconds / 3`` (the long poll's ``wait``), also when full."""
        try:
            while not self.stop.is_set():
                with self._active_lock:
                    free = max(0, self.settings.max_calls - len(self._active))
                body = {
                    "dialer_id": self.settings.dialer_id,
                    "max_calls": min(free, MAX_BATCH),
                    "wait": self.wait,
                }
                response = self.post("/dialer/poll", body, timeout=self.wait + 15)
                if response.status_code != 200:
                    error, description = _error_of(response)
                    raise Fatal(
                        f"The call API refused the poll ({response.status_code} {error}: "
                        f"{description})"
                    )
                data = response.json()
                lease = float(data.get("lease_seconds") or 30)
                self.wait = max(0.0, min(self.settings.wait, lease / 3, MAX_WAIT))
                for ended in data.get("ended", []):
                    self._ended(ended)
                self._orphans(data.get("held", []))
                if self.stop.is_set():
                    return  # claimed now, left to the lease rule (requeued)
                for call in data.get("calls", []):
                    self._start(call)
        except Stopping:
            return
        except Fatal as exc:
            self.fail(str(exc))
        except Exception as exc:  # never crash silently: say what and stop
            self.fail(f"unexpected error in the poll loop: {exc!r}")

    def _start(self, call: dict[str, Any]) -> None:
        script = Script(self, call)
        with self._active_lock:
            self._active[script.token_call] = script
        claims = call.get("claims")
        self.log(f"call {script.token_call} to {script.number}: claimed (claim {claims})")
        script.start()

    def _orphans(self, held: list[Any]) -> None:
        """Calls the call API says this dialer_id holds but no script runs (the simulator
        restarted under the same id): they cannot be placed any more, so report them failed."""
        with self._active_lock:
            unknown = [str(t) for t in held if str(t) not in self._active]
        for token_call in unknown:
            response = self.post(
                f"/dialer/calls/{token_call}/events",
                {"dialer_id": self.settings.dialer_id, "event": "failed"},
                timeout=15,
            )
            self.log(
                f"call {token_call}: held under this dialer_id but not running here (a "
                f"restart?): reported failed ({response.status_code})"
            )

    def _ended(self, ended: dict[str, Any]) -> None:
        token_call = str(ended.get("token_call"))
        with self._active_lock:
            script = self._active.get(token_call)
        if script is not None:
            script.ended = True
            script.cancelled.set()
        self.log(
            f"call {token_call}: ended by the call API ({ended.get('state')}, end_reason "
            f"{ended.get('end_reason')}): script stopped, no more events"
        )

    def done(self, script: Script) -> None:
        with self._active_lock:
            if self._active.get(script.token_call) is script:
                del self._active[script.token_call]

    def run(self) -> int:
        """Poll until stopped (``stop`` set: a signal, or a fatal error); then end the
        calls still live. Returns the exit status."""
        s = self.settings
        self.log(
            f"simulator dialer started: call API {s.api_url}, auth server {s.issuer}, client "
            f"{s.client_id}; rings {s.ring_seconds:g}s, talks {s.talk_seconds:g}s, up to "
            f"{s.max_calls} calls at once; test numbers: "
            + "; ".join(f"{n} {what}" for n, what in TEST_NUMBERS.items())
        )
        poller = threading.Thread(target=self.poll_loop, name="poll", daemon=True)
        poller.start()
        # A signal may be delivered to another thread: its Python handler runs only when the
        # main thread runs bytecode, which a wait without timeout would never do.
        while not self.stop.wait(0.2):
            pass
        with self._active_lock:
            scripts = list(self._active.values())
        if scripts:
            self.log(f"stopping: ending {len(scripts)} live call(s)")
        for script in scripts:
            script.stopping = True
            script.cancelled.set()
        deadline = time.monotonic() + STOP_TIMEOUT + 2
        for script in scripts:
            script.join(max(0.0, deadline - time.monotonic()))
        if self.fatal:
            self.log(f"stopped: {self.fatal}")
            return 1
        self.log("stopped")
        return 0


class Script(threading.Thread):
    """One claimed call, played by its number."""

    def __init__(self, sim: Simulator, call: dict[str, Any]) -> None:
        self.sim = sim
        self.call = call
        self.token_call = str(call["token_call"])
        self.number = str(call.get("number"))
        self.state = str(call.get("state", "queued"))
        self.cancelled = threading.Event()  # the call ended elsewhere, or the simulator stops
        self.stopping = False
        self.ended = False  # a poll said the call ended: report nothing more
        super().__init__(name=f"call-{self.token_call[:8]}", daemon=True)

    def run(self) -> None:
        try:
            self.play()
            if self.stopping and not self.ended and self.state in ("ringing", "in-progress"):
                self.event("hangup" if self.state == "in-progress" else "failed", last=True)
        except Stopping:
            pass
        except Fatal as exc:
            self.sim.fail(str(exc))
        except Exception as exc:  # one call's surprise never stops the simulator
            self.sim.log(f"call {self.token_call}: script error {exc!r}; call dropped")
        finally:
            self.sim.done(self)

    def pause(self, seconds: float | None) -> bool:
        """Sleep ``seconds`` (None: until stopped); False if the call was stopped."""
        return not self.cancelled.wait(seconds)

    def event(self, name: str, last: bool = False) -> bool:
        """Report ``name``; False when the call API refused it (the call is dropped)."""
        body = {"dialer_id": self.sim.settings.dialer_id, "event": name}
        path = f"/dialer/calls/{self.token_call}/events"
        if last:
            response = self.sim.post(path, body, timeout=STOP_TIMEOUT, retry=False)
        else:
            response = self.sim.post(path, body, timeout=EVENT_TIMEOUT, cancelled=self.cancelled)
        prefix = f"call {self.token_call} to {self.number}: {name}"
        if response.status_code == 200:
            self.state = str(response.json().get("state"))
            again = response.headers.get("Dialer-Event-Applied") == "false"
            self.sim.log(f"{prefix} -> {self.state}" + (" (already applied)" if again else ""))
            return self.state in LIVE
        error, description = _error_of(response)
        self.sim.log(
            f"{prefix} refused ({response.status_code} {error}: {description}); call dropped"
        )
        return False

    def play(self) -> None:
        settings = self.sim.settings
        if self.number == FAILS:
            self.event("failed")
            return
        if not self.event("ringing"):
            return
        ring_timeout = float(self.call.get("ring_timeout") or DEFAULT_RING_TIMEOUT)
        if self.number == NO_ANSWER or settings.ring_seconds >= ring_timeout:
            if self.pause(ring_timeout):
                self.event("no-answer")
            return
        if not self.pause(settings.ring_seconds):
            return
        if self.number == BUSY:
            self.event("busy")
            return
        if not self.event("answered"):
            return
        limit = self.call.get("time_limit")
        talk: float | None = float(limit) if limit else None
        if self.number == ANSWERS:
            talk = settings.talk_seconds if talk is None else min(talk, settings.talk_seconds)
        if self.pause(talk):
            self.event("hangup")


def _seconds_setting(value: float | None, name: str, raw: str) -> float:
    """An option's value, else the variable ``name`` (read by the caller: ``raw``)."""
    if value is not None:
        return value
    try:
        number = float(raw)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 86_400:
        raise UsageProblem(f"{name} must be a number of seconds from 0 to 86400, got {raw!r}.")
    return number


@click.command("simulator")
@click.option(
    "--client-id",
    help="The simulator's OAuth client (client_credentials, scope dialer). "
    "[default: DIALER_CLIENT_ID; required]",
)
@click.option(
    "--client-secret",
    help="That client's secret. Prefer the variable: a command line is visible to every "
    "user of the machine. [default: DIALER_CLIENT_SECRET; required]",
)
@click.option(
    "--issuer",
    help="The auth server; its token endpoint is read from ISSUER/.well-known/"
    "oauth-authorization-server. [default: AUTH_ISSUER, else http://127.0.0.1:8888]",
)
@click.option(
    "--api-url",
    help="The call API's base URL. [default: CALL_API_URL, else http://127.0.0.1:8889]",
)
@click.option(
    "--ring-seconds",
    type=click.FloatRange(0, 86_400),
    help="How long a test number rings before it answers or is busy. "
    "[default: SIMULATOR_RING_SECONDS, else 1]",
)
@click.option(
    "--talk-seconds",
    type=click.FloatRange(0, 86_400),
    help="How long +15005550006 talks before it hangs up (at most the call's time_limit). "
    "[default: SIMULATOR_TALK_SECONDS, else 3]",
)
@click.option(
    "--id",
    "dialer_id",
    help="This dialer's dialer_id (letters, digits, '.', '_', ':', '-'; unique per replica). "
    "[default: SIMULATOR_ID, else simulator-HOSTNAME-PID]",
)
@click.option(
    "--max-calls",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Calls handled at once; it claims no more while full (but keeps polling).",
)
@click.option(
    "--wait",
    type=click.FloatRange(0, MAX_WAIT),
    default=10.0,
    show_default=True,
    help="Seconds a poll waits for work (a long poll), at most a third of the lease.",
)
def command(
    client_id: str | None,
    client_secret: str | None,
    issuer: str | None,
    api_url: str | None,
    ring_seconds: float | None,
    talk_seconds: float | None,
    dialer_id: str | None,
    max_calls: int,
    wait: float,
) -> None:
    """Run the simulator dialer until stopped (SIGTERM or Ctrl-C).

    A stand-in phone system for development: it claims queued calls over the dialer
    interface (POST /dialer/poll) and plays each by its number. Test numbers:
    +15005550006 rings, answers, talks, hangs up (completed); +15005550007 busy;
    +15005550008 never answers (no-answer at the call's ring_timeout); +15005550009 fails
    at once (failed); any other number answers and stays in-progress until the app hangs
    up or the call's time_limit.
    """
    client_id = client_id or env_str("DIALER_CLIENT_ID", "")
    client_secret = client_secret or env_str("DIALER_CLIENT_SECRET", "")
    if not client_id or not client_secret:
        raise UsageProblem(
            "The simulator needs its OAuth client: set DIALER_CLIENT_ID and "
            "DIALER_CLIENT_SECRET (a client_credentials client with the dialer scope, e.g. "
            "`auth-server clients create --name Dialer --grant-type client_credentials "
            "--scope dialer --json`). `make run` starts it with one."
        )
    dialer_id = dialer_id or env_str("SIMULATOR_ID", "") or default_dialer_id()
    if not DIALER_ID.fullmatch(dialer_id):
        raise UsageProblem(
            f"Invalid dialer id {dialer_id!r}: 1-128 letters, digits, '.', '_', ':' or '-'."
        )
    settings = Settings(
        client_id=client_id,
        client_secret=client_secret,
        issuer=(issuer or env_str("AUTH_ISSUER", "http://127.0.0.1:8888")).rstrip("/"),
        api_url=(api_url or env_str("CALL_API_URL", "http://127.0.0.1:8889")).rstrip("/"),
        ring_seconds=_seconds_setting(
            ring_seconds, "SIMULATOR_RING_SECONDS", env_str("SIMULATOR_RING_SECONDS", "1")
        ),
        talk_seconds=_seconds_setting(
            talk_seconds, "SIMULATOR_TALK_SECONDS", env_str("SIMULATOR_TALK_SECONDS", "3")
        ),
        dialer_id=dialer_id,
        max_calls=max_calls,
        wait=wait,
    )
    simulator = Simulator(settings)

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        simulator.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    status = simulator.run()
    if simulator.fatal:
        raise click.ClickException(simulator.fatal)
    sys.exit(status)
