"""The front door, as a newcomer meets it: a fresh ``git clone``, no ClickCall variable set,
``make run``, the README's walk-through pasted verbatim, then ``make clean``.

The suite's own settings (an absolute ``CLICKCALL_VAR_DIR``, test database URLs) once hid
a crash every newcomer hit, so these tests start ``make run`` in a clone with a clean
environment (``PATH`` and ``HOME`` only). The clone gets the working tree's uncommitted
edits too, so the code under test is the code in front of you; ``.venv`` is linked, as
``make install`` would have made it. ``make run`` also starts the webhook worker and the
simulator dialer, so the walk-through shows a call go queued → ringing → in-progress →
completed and the signed webhooks that report it. Needs ports 8888 and 8889 (the demo
client's redirect URI names 8888) and 8890 (the walk-through's webhook receiver): skipped
when they are busy, except in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
AUTH = "http://127.0.0.1:8888"
API = "http://127.0.0.1:8889"
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ports_8888_8889")]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def fresh_clone(dest: Path) -> Path:
    """``git clone`` of this repository plus the working tree's uncommitted edits."""
    _git("clone", "-q", str(ROOT), str(dest))
    changed = _git("diff", "--name-only", "HEAD").split()
    changed += _git("ls-files", "--others", "--exclude-standard").split()
    for name in changed:
        source, target = ROOT / name, dest / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.exists():
            target.unlink()
    if changed:  # committed in the clone, so its `git status` shows only what runs leave
        _git("add", "-A", cwd=dest)
        _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "edits", cwd=dest)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def stray_files(clone: Path, allowed: tuple[str, ...]) -> list[str]:
    """What ``git status`` shows in the clone (ignored files too), less ``allowed``."""
    lines = _git("status", "--porcelain", "--ignored", "--untracked-files=all", cwd=clone)
    paths = [line[3:] for line in lines.splitlines()]
    return [p for p in paths if not p.startswith(allowed) and "__pycache__/" not in p]


class QuickStart:
    """``make run`` in a fresh clone, with a clean environment."""

    def __init__(self, clone: Path, log_path: Path) -> None:
        self.clone = clone
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            ["make", "run"],
            cwd=clone,
            env=CLEAN_ENV,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for url in (AUTH, API):
            while True:
                try:
                    if requests.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert self.process.poll() is None, f"make run exited:\n{self.log()}"
                assert time.monotonic() < deadline, f"{url}/healthz never answered:\n{self.log()}"
                time.sleep(0.2)

    def wait_for_line(self, pattern: str, timeout: float = 30) -> None:
        """Until a line of the log matches ``pattern`` (a deadline wait)."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.log(), re.M):
            assert self.process.poll() is None, f"make run exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"no line {pattern!r}:\n{self.log()}"
            time.sleep(0.2)

    def stop(self) -> None:
        """Ctrl-C, as a person stops it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._log.close()


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuickStart]:
    if not all(_port_free(port) for port in (8888, 8889, 8890)):
        if os.environ.get("CI") == "true":
            pytest.fail("ports 8888/8889/8890 are busy")
        pytest.skip("ports 8888/8889/8890 are busy (is `make run` running?)")
    base = tmp_path_factory.mktemp("newcomer")
    running = QuickStart(fresh_clone(base / "clickcall"), base / "make-run.log")
    try:
        running.wait_healthy()
        yield running
    finally:
        running.stop()


def test_make_run_on_a_fresh_clone_serves_both_and_issues_a_token(quick_start):
    for url in (AUTH, API):
        assert requests.get(url + "/healthz", timeout=5).json()["status"] == "ok"
    log = quick_start.log()
    assert "Auth server: http://127.0.0.1:8888" in log
    # Beside the services: the webhook worker and the simulator dialer, with its own client.
    assert re.search(r"^Webhook worker: call-api worker \(pid \d+\)$", log, re.M), log
    assert re.search(
        r"^Simulator dialer: call-api simulator \(pid \d+\), client_id=simulator-dialer ", log, re.M
    ), log
    started = r" simulator simulator-[\w.-]+: got a dialer token \(expires in 3600s\)$"
    quick_start.wait_for_line(started)
    token = requests.post(
        AUTH + "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        auth=("demo-admin", "demo-admin-secret"),
        timeout=10,
    )
    assert token.status_code == 200, token.text
    assert token.json()["token_type"] == "Bearer"
    # The call API fetches the auth server's keys and accepts the token.
    user = requests.get(
        API + "/admin/users/nobody",
        headers={"Authorization": "Bearer " + token.json()["access_token"]},
        timeout=10,
    )
    assert user.status_code == 200, user.text
    assert user.json()["max_ongoing"] == 2
    # The databases are where a person reads the URL: var/ of the working directory.
    clone = quick_start.clone
    assert (clone / "var" / "auth.db").is_file() and (clone / "var" / "calls.db").is_file()
    assert not (clone / "instance").exists()


def test_config_show_prints_the_database_url_actually_used(quick_start):
    clone = quick_start.clone
    for command, name in (("auth-server", "auth.db"), ("call-api", "calls.db")):
        result = subprocess.run(
            [f".venv/bin/{command}", "config", "show"],
            cwd=clone,
            env=CLEAN_ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)
        assert shown["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{clone}/var/{name}"


def test_each_service_metrics_show_only_its_own_series(quick_start):
    auth = requests.get(AUTH + "/metrics", timeout=5).text
    api = requests.get(API + "/metrics", timeout=5).text
    assert "clickcall_tokens_issued_total" in auth
    assert "clickcall_tokens_issued_total" not in api
    for name in ("clickcall_calls_started_total", "clickcall_jwks_refreshes_total"):
        assert name in api
        assert name not in auth
    assert 'service="auth_server"' in auth and 'service="call_api"' not in auth
    assert 'service="call_api"' in api and 'service="auth_server"' not in api


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Walk-through with curl", 1)[1].split("## Endpoints", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def run_walkthrough(clone: Path) -> tuple[int, str, str]:
    """The README's blocks under ``set -euo pipefail``; whatever they started in the
    background (the webhook receiver) is stopped afterwards, even if a block failed."""
    script = "set -euo pipefail\n" + "\n".join(readme_blocks())
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=clone,
        env=CLEAN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=180)
    finally:
        try:
            os.killpg(shell.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shell.wait()
    return shell.returncode, out, err


def json_objects(out: str) -> list[dict[str, Any]]:
    """The JSON objects the blocks printed on one line each (a call, a receiver's line, …);
    ``curl`` prints no newline after a body, so several may share a line."""
    decoder = json.JSONDecoder()
    found = []
    for line in out.splitlines():
        start = line.find('{"')
        while start != -1:
            try:
                value, end = decoder.raw_decode(line, start)
            except ValueError:
                start = line.find('{"', start + 1)
                continue
            found.append(value)
            start = line.find('{"', end)
    return found


def test_readme_walkthrough_runs_verbatim_and_leaves_nothing_behind(quick_start):
    status, out, err = run_walkthrough(quick_start.clone)
    assert status == 0, f"stdout:\n{out}\nstderr:\n{err}"
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
    # 4. A call's lifecycle: every state seen in order, the call completed by the simulator...
    assert re.findall(r"^state: (\S+)$", out, re.M) == [
        "queued",
        "ringing",
        "in-progress",
        "completed",
    ]
    (call,) = [c for c in json_objects(out) if c.get("number") == "+15005550006"]
    assert (call["state"], call["status"], call["end_reason"], call["time_limit"]) == (
        "completed",
        "ended",
        "remote",
        60,
    )
    assert call["ringing_at"] and call["answered_at"] and call["duration"] >= 3
    # ... and the receiver's lines: each step once (at least once: duplicates are the same
    # webhook-id), in order, each signature verified with standardwebhooks.
    hooks = [
        h
        for h in json_objects(out)
        if "verified" in h and h.get("token_call") == call["token_call"]
    ]
    events = dict.fromkeys((h["webhook_id"], h["type"]) for h in hooks)  # first seen first
    assert [kind for _, kind in events] == [
        "call.queued",
        "call.ringing",
        "call.in-progress",
        "call.completed",
    ]
    assert all(h["verified"] is True and h["webhook_id"].startswith("msg_") for h in hooks)
    assert [h["state"] for h in hooks] == [h["type"].removeprefix("call.") for h in hooks]
    assert '"limit_source": "default"' in out and '"max_ongoing": 3' in out
    assert '"client_secret"' in out  # clients create --json
    assert stray_files(quick_start.clone, ("var/", ".venv")) == []


def test_make_clean_undoes_make_run(quick_start):
    quick_start.stop()
    result = subprocess.run(
        ["make", "clean"], cwd=quick_start.clone, env=CLEAN_ENV, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert stray_files(quick_start.clone, (".venv",)) == []
    leftovers = [str(p) for p in quick_start.clone.rglob("__pycache__") if ".venv" not in p.parts]
    assert leftovers == []
