"""Reading settings from the environment, and refusing insecure defaults in production."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path


class ConfigError(RuntimeError):
    """A setting is missing or unsafe; the message names the variable."""


def env_str(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    value = env.get(name)
    return default if value is None or value == "" else value


def env_int(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    raw = env_str(name, str(default), environ)
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    """A number of seconds and the like: ``0.5`` or ``5``; never NaN or infinite."""
    raw = env_str(name, repr(default), environ)
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    return value


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    raw = env_str(name, "true" if default else "false", environ).strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def env_list(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    raw = env_str(name, "", environ)
    return [item.strip() for item in raw.replace(",", " ").split() if item.strip()]


def is_production(environ: Mapping[str, str] | None = None) -> bool:
    return env_str("APP_ENV", "development", environ).lower() == "production"


def var_dir() -> Path:
    """The development state folder (``var/`` in the working directory)."""
    return Path(env_str("CLICKCALL_VAR_DIR", "var"))


def dev_secret_key(name: str) -> str:
    """A per-checkout secret kept in ``var/NAME`` (mode 0600), made on first use, so
    development sessions survive restarts. Never used in production, which requires the
    variable to be set."""
    path = var_dir() / name
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


def require_production_setting(name: str, value: object, bad: bool, why: str) -> None:
    if bad:
        raise ConfigError(f"APP_ENV=production refuses {name}={value!r}: {why}")


def load_dotenv_in_development() -> None:
    """Read ``./.env`` (python-dotenv) unless ``APP_ENV=production``; real env vars win."""
    if is_production() or not Path(".env").is_file():
        return
    from dotenv import load_dotenv

    load_dotenv(".env", override=False)
