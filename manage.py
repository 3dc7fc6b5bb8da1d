"""Run both ClickCall services for development (the original's entry point).

``python manage.py`` (or ``make run``): creates the SQLite databases under ``var/``, the
development signing key under ``var/keys/`` and the demo accounts on first start, prints
them, then serves the auth server on 127.0.0.1:8888 and the call API on 127.0.0.1:8889
until Ctrl-C. Production runs each service on its own under gunicorn instead.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

from werkzeug.serving import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    """The apps log one JSON line per request (without query strings, which may hold
    tokens or codes); the dev server's own access line would repeat the full URL."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("CLICKCALL_HOST", "127.0.0.1"))
    parser.add_argument("--auth-port", type=int, default=int(os.environ.get("AUTH_PORT", 8888)))
    parser.add_argument("--call-port", type=int, default=int(os.environ.get("CALL_PORT", 8889)))
    args = parser.parse_args(argv)

    import auth_server
    import call_api
    from auth_server.demo import ensure_demo
    from auth_server.schema import upgrade as upgrade_auth
    from auth_server.tokens import keyring
    from call_api.schema import upgrade as upgrade_calls

    auth_app = auth_server.create_app()
    call_app = call_api.create_app()
    with auth_app.app_context():
        upgrade_auth()
        key = keyring().current()
        print(ensure_demo())
        print(f"Signing key: {key.kid} ({key.algorithm}) in {auth_app.config['AUTH_KEYS_DIR']}")
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
    print("Press Ctrl-C to stop both.", flush=True)

    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    stop.wait()
    for server in servers:
        server.shutdown()
    print("Stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
