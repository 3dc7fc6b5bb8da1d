"""The README's walk-through, run verbatim against ``python manage.py`` (what `make run` runs).

Every ```bash block between "Walk-through with curl" and "Endpoints" is executed in order in
one bash process; the test then checks the outputs the README promises. Needs ports 8888
and 8889 (the demo client's redirect URI names 8888); skipped when they are busy, except in CI.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Walk-through with curl", 1)[1].split("## Endpoints", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    if not (_port_free(8888) and _port_free(8889)):
        if os.environ.get("CI") == "true":
            pytest.fail("ports 8888/8889 are busy")
        pytest.skip("ports 8888/8889 are busy (is `make run` running?)")
    var = tmp_path / "var"
    env = {**os.environ, "CLICKCALL_VAR_DIR": str(var)}
    for name in ("AUTH_DATABASE_URL", "CALL_DATABASE_URL", "AUTH_KEYS_DIR", "APP_ENV"):
        env.pop(name, None)
    log = open(tmp_path / "manage.log", "wb")
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py")],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get("http://127.0.0.1:8889/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None, (tmp_path / "manage.log").read_text()
            assert time.monotonic() < deadline, "manage.py did not start"
            time.sleep(0.2)
        script = "set -euo pipefail\n" + "\n".join(readme_blocks())
        script = script.replace(".venv/bin/", f"{ROOT}/.venv/bin/")
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.terminate()
        server.wait(15)
        log.close()
    out = result.stdout
    assert result.returncode == 0, f"stdout:\n{out}\nstderr:\n{result.stderr}"
    assert "302 http://127.0.0.1:8888/auth/login?response_type=code&client_id=demo-app" in out
    assert "303 http://127.0.0.1:8888/auth/grant?response_type=code" in out
    assert re.search(r"http://127\.0\.0\.1:8888/test\?code=[\w-]+&state=xyz", out)
    assert re.search(
        r"302 http://127\.0\.0\.1:8888/test#token_type=Bearer&access_token=[\w.-]+"
        r"&expires_in=900&scope=call&state=abc",
        out,
    )
    assert "HTTP/1.1 201" in out and "Location: /rest/call?token_call=" in out
    assert '"number": "+14155550123"' in out
    assert "<number>+14155550123</number>" in out
    assert (
        '{"error": "max_calls_exceeded", "error_description": "You already have 2 ongoing '
        'call(s); the limit is 2.", "max_ongoing": 2, "ongoing": 2}\n409'
    ) in out
    assert '"end_reason": "hangup"' in out
    assert '"limit_source": "default"' in out and '"max_ongoing": 3' in out
    assert '"client_secret"' in out  # clients create --json
