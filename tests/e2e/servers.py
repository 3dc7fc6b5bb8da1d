"""Real server processes for end-to-end tests: each service under gunicorn on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.conftest import TEST_PASSWORD_HASH_METHOD


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text(errors='replace')}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready in {timeout}s:\n{log_path.read_text(errors='replace')}")


@contextmanager
def run_service(
    service: str,
    env: dict[str, str],
    port: int | None = None,
    workers: int = 1,
    threads: int = 8,
) -> Iterator[Server]:
    """Start ``auth_server`` or ``call_api`` under gunicorn; stop it (SIGTERM) afterwards."""
    port = port or free_port()
    log_file = tempfile.NamedTemporaryFile(prefix=f"{service}-", suffix=".log", delete=False)
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "5",
        "--timeout",
        "30",
        f"{service}:create_app()",
    ]
    full_env = {**os.environ, "CLICKCALL_VAR_DIR": tempfile.mkdtemp(), **env}
    process = subprocess.Popen(cmd, env=full_env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, Path(log_file.name))
        yield Server(url, process, Path(log_file.name))
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log_file.close()


def auth_env(database_url: str, keys_dir: str, issuer: str, audience: str) -> dict[str, str]:
    return {
        "AUTH_DATABASE_URL": database_url,
        "AUTH_KEYS_DIR": keys_dir,
        "AUTH_ISSUER": issuer,
        "CALL_AUDIENCE": audience,
        "AUTH_SECRET_KEY": "e2e-secret-key",
        "RATELIMIT_ENABLED": "false",
        "AUTH_PASSWORD_HASH_METHOD": TEST_PASSWORD_HASH_METHOD,
    }


def call_env(
    database_url: str,
    issuer: str,
    audience: str,
    jwks_url: str | None = None,
    public_key_file: str | None = None,
) -> dict[str, str]:
    env = {"CALL_DATABASE_URL": database_url, "AUTH_ISSUER": issuer, "CALL_AUDIENCE": audience}
    if jwks_url:
        env["CALL_JWKS_URL"] = jwks_url
    if public_key_file:
        env["CALL_PUBLIC_KEY_FILE"] = public_key_file
    return env
