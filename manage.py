"""Run both ClickCall services for development (the original's entry point).

``python manage.py`` (or ``make run``): creates the SQLite databases under ``var/``, the
development signing key under ``var/keys/`` and the demo accounts on first start, prints
them (with the call API pages' OAuth client, ``calls-web``, given a new secret at each
start and handed to the call API app), then serves the auth server on 127.0.0.1:8888 and
the call API on 127.0.0.1:8889, and starts two child processes: the webhook worker
(``call-api worker``) and the simulator dialer (``call-api simulator``, with the
``simulator-dialer`` demo client and a secret made for this start), until Ctrl-C.
``--no-worker`` / ``--no-simulator`` leave either out. Production runs each service on its
own under gunicorn, and its own worker and dialer.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from werkzeug.serving import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    """The apps log one JSON line per request (without query strings, which may hold
    tokens or codes); the dev server's own access line would repeat the full URL."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@dataclass
class Child:
    """A process ``manage.py`` runs beside the two services."""

    label: str
    process: subprocess.Popen[bytes]
    stopping: bool = False


def call_api_command(*args: str) -> list[str]:
    """``call-api ARGS`` from this virtualenv (the console script next to the interpreter,
    else ``python -m call_api.cli``)."""
    script = Path(sys.executable).with_name("call-api")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-m", "call_api.cli", *args]


def local_url(host: str, port: int) -> str:
    """Where a process on this machine reaches a service bound to ``host``."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def start_child(label: str, args: list[str], env: dict[str, str], note: str = "") -> Child:
    sys.stdout.flush()  # what was printed so far comes before the child's lines
    child = Child(label, subprocess.Popen(call_api_command(*args), env=env))
    print(f"{label}: call-api {' '.join(args)} (pid {child.process.pid}){note}", flush=True)
    return child


def watch(child: Child) -> None:
    """Say so when a child exits while the services run (nothing restarts it)."""
    status = child.process.wait()
    if not child.stopping:
        print(
            f"{child.label} exited with status {status}; the services keep running without "
            "it (restart `make run` to get it back).",
            file=sys.stderr,
            flush=True,
        )


def stop_children(children: list[Child], timeout: float = 10) -> None:
    """SIGTERM each child, wait for them, SIGKILL what is left."""
    for child in children:
        child.stopping = True
        if child.process.poll() is None:
            child.process.terminate()
    for child in children:
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("CLICKCALL_HOST", "127.0.0.1"))
    parser.add_argument("--auth-port", type=int, default=int(os.environ.get("AUTH_PORT", 8888)))
    parser.add_argument("--call-port", type=int, default=int(os.environ.get("CALL_PORT", 8889)))
    parser.add_argument("--no-worker", action="store_true", help="do not start the webhook worker")
    parser.add_argument(
        "--no-simulator", action="store_true", help="do not start the simulator dialer"
    )
    args = parser.parse_args(argv)

    import auth_server
    import call_api
    from auth_server.demo import ensure_calls_web_client, ensure_demo, ensure_simulator_client
    from auth_server.schema import upgrade as upgrade_auth
    from auth_server.tokens import keyring
    from call_api.schema import upgrade as upgrade_calls

    auth_url = local_url(args.host, args.auth_port)
    call_url = os.environ.get("CALL_WEB_URL") or local_url(args.host, args.call_port)
    auth_app = auth_server.create_app()
    with auth_app.app_context():
        upgrade_auth()
        key = keyring().current()
        print(ensure_demo())
        pages: dict[str, str] = {"CALL_WEB_URL": call_url}
        if not os.environ.get("CALL_WEB_CLIENT_ID"):
            # The client the call API's pages sign people in as (a new secret each start).
            client_id, secret = ensure_calls_web_client(f"{call_url}/calls/callback")
            pages.update(CALL_WEB_CLIENT_ID=client_id, CALL_WEB_CLIENT_SECRET=secret)
            print(
                f"  pages client  client_id={client_id} scope=call admin (the call API's "
                "pages; a new secret each start, handed to the call API)"
            )
        print(f"Signing key: {key.kid} ({key.algorithm}) in {auth_app.config['AUTH_KEYS_DIR']}")
        dialer = None if args.no_simulator else ensure_simulator_client()
    call_app = call_api.create_app(pages)
    with call_app.app_context():
        upgrade_calls()

    servers = [
        make_server(
            args.host, args.auth_port, auth_app, threaded=True, request_handler=QuietHandler
        ),
        make_server(
            args.host, args.call_port, call_app, threaded=True, request_handler=QuietHandler
        ),
    ]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    print(f"Auth server: http://{args.host}:{args.auth_port}")
    print(f"Call API:    http://{args.host}:{args.call_port}")
    print("Pages (sign in as a demo account above):")
    print(f"  your account         {auth_url}/account")
    print(f"  your calls           {call_url}/calls")
    print(f"  operator consoles    {auth_url}/console and {call_url}/calls/console (admin)")

    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    children = []
    if not args.no_worker:
        children.append(start_child("Webhook worker", ["worker"], dict(os.environ)))
    if dialer is not None:
        env = {
            **os.environ,
            "DIALER_CLIENT_ID": dialer[0],
            "DIALER_CLIENT_SECRET": dialer[1],
            "AUTH_ISSUER": local_url(args.host, args.auth_port),
            "CALL_API_URL": local_url(args.host, args.call_port),
        }
        note = (
            f", client_id={dialer[0]} (scope dialer, a new secret each start); its test "
            'numbers are in README.md, "The simulator dialer"'
        )
        children.append(start_child("Simulator dialer", ["simulator"], env, note))
    for child in children:
        threading.Thread(target=watch, args=(child,), daemon=True).start()
    print("Press Ctrl-C to stop them all.", flush=True)
    # A signal may be delivered to another thread: its Python handler runs only when the main
    # thread runs bytecode, which a wait without timeout would never do.
    while not stop.wait(0.5):
        pass
    stop_children(children)
    for server in servers:
        server.shutdown()
    print("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
