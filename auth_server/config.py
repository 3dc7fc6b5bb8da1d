"""The auth server's settings: defaults, then the environment, then a test mapping."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from werkzeug.security import DEFAULT_PBKDF2_ITERATIONS

from shared.config import (
    ConfigError,
    dev_secret_key,
    env_bool,
    env_int,
    env_list,
    env_str,
    is_production,
    require_production_setting,
    var_dir,
)
from shared.db import engine_options, normalise_url

from .rules import DEVICE_CODE_GRANT_TYPE, SCOPES

# AUTH_REGISTRATION: how the dynamic client registration endpoint (RFC 7591) is guarded.
REGISTRATION_MODES = ("token", "open", "off")

# Werkzeug's password hash (scrypt, N=2**15, r=8, p=1: about 0.1 s per hash). The tests set a
# cheap one; production refuses anything weaker than these (OWASP's PBKDF2 counts).
DEFAULT_PASSWORD_HASH_METHOD = "scrypt"
MIN_SCRYPT_N, MIN_SCRYPT_R = 2**15, 8
MIN_PBKDF2_ITERATIONS = {"sha256": 600_000, "sha512": 210_000}


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    production = is_production(env)
    database_url = normalise_url(
        env_str("AUTH_DATABASE_URL", f"sqlite:///{var_dir()}/auth.db", env)
    )
    ttl = env_int("ACCESS_TOKEN_TTL", 3600, env)
    implicit_ttl = env_int("IMPLICIT_TOKEN_TTL", min(ttl, 900), env)
    secret_key = env_str("AUTH_SECRET_KEY", "", env)
    keys_dir = env_str("AUTH_KEYS_DIR", str(var_dir() / "keys"), env)
    issuer = env_str("AUTH_ISSUER", "http://127.0.0.1:8888", env).rstrip("/")
    statement_timeout = env_int("DB_STATEMENT_TIMEOUT_MS", 5000, env)
    cfg: dict[str, Any] = {
        "APP_ENV": "production" if production else "development",
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url, statement_timeout),
        "DB_STATEMENT_TIMEOUT_MS": statement_timeout,
        "AUTH_ISSUER": issuer,
        "AUTH_KEYS_DIR": keys_dir,
        "AUTH_SIGNING_ALG": env_str("AUTH_SIGNING_ALG", "RS256", env),
        "AUTH_GENERATE_KEYS": env_bool("AUTH_GENERATE_KEYS", not production, env),
        "CALL_AUDIENCE": env_str("CALL_AUDIENCE", "http://127.0.0.1:8889", env),
        "ACCESS_TOKEN_TTL": ttl,
        "AUTH_CODE_TTL": env_int("AUTH_CODE_TTL", 60, env),
        # OpenID Connect: seconds an ID token is valid (its exp - iat).
        "AUTH_ID_TOKEN_TTL": env_int("AUTH_ID_TOKEN_TTL", 3600, env),
        # RFC 8628: how long a device code and its user code live, and the polling interval.
        "AUTH_DEVICE_CODE_TTL": env_int("AUTH_DEVICE_CODE_TTL", 600, env),
        "AUTH_DEVICE_POLL_INTERVAL": env_int("AUTH_DEVICE_POLL_INTERVAL", 5, env),
        # Wrong codes typed on the /device page (guesses at someone else's code).
        "AUTH_DEVICE_LIMIT_PER_IP": env_str("AUTH_DEVICE_LIMIT_PER_IP", "20 per minute", env),
        "AUTH_DEVICE_LIMIT_PER_USER": env_str("AUTH_DEVICE_LIMIT_PER_USER", "5 per minute", env),
        "REFRESH_TOKEN_TTL": env_int("REFRESH_TOKEN_TTL", 30 * 24 * 3600, env),
        # RFC 9126 (auth_server/par.py): a pushed request's lifetime; PAR for every client.
        "AUTH_PAR_TTL": env_int("AUTH_PAR_TTL", 60, env),
        "AUTH_REQUIRE_PAR": env_bool("AUTH_REQUIRE_PAR", False, env),
        # RFC 9449 (auth_server/dpop.py): how far a proof's iat may be from now (either
        # way), server nonces, and Redis for the jti replay cache (unset: the database).
        "AUTH_DPOP_PROOF_WINDOW": env_int("AUTH_DPOP_PROOF_WINDOW", 60, env),
        "AUTH_DPOP_NONCE": env_bool("AUTH_DPOP_NONCE", False, env),
        "AUTH_DPOP_REDIS_URL": env_str("AUTH_DPOP_REDIS_URL", "", env),
        "OAUTH2_SCOPES_SUPPORTED": list(SCOPES),
        "OAUTH2_TOKEN_EXPIRES_IN": {
            "authorization_code": ttl,
            "client_credentials": ttl,
            "refresh_token": ttl,
            "implicit": implicit_ttl,
            DEVICE_CODE_GRANT_TYPE: ttl,
        },
        "OAUTH2_REFRESH_TOKEN_GENERATOR": True,
        "CORS_ORIGINS": env_list("CORS_ORIGINS", env),
        "RATELIMIT_STORAGE_URI": env_str("RATELIMIT_STORAGE_URI", "memory://", env),
        "RATELIMIT_ENABLED": env_bool("RATELIMIT_ENABLED", True, env),
        "LOGIN_LIMIT_PER_USERNAME": env_str("LOGIN_LIMIT_PER_USERNAME", "5 per minute", env),
        "LOGIN_LIMIT_PER_IP": env_str("LOGIN_LIMIT_PER_IP", "20 per minute", env),
        # A browser that signed in as the user before (device cookie) has its own budget.
        "LOGIN_LIMIT_PER_DEVICE": env_str("LOGIN_LIMIT_PER_DEVICE", "10 per minute", env),
        "MAX_CONTENT_LENGTH": env_int("MAX_CONTENT_LENGTH", 64 * 1024, env),
        "SESSION_COOKIE_NAME": "clickcall_auth",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env_bool("SESSION_COOKIE_SECURE", production, env),
        "PERMANENT_SESSION_LIFETIME": env_int("SESSION_LIFETIME", 8 * 3600, env),
        "SESSION_IDLE_TIMEOUT": env_int("SESSION_IDLE_TIMEOUT", 2 * 3600, env),
        "JSON_SORT_KEYS": False,
        "TRUSTED_PROXIES": env_int("TRUSTED_PROXIES", 0, env),
        # When set, GET /metrics needs "Authorization: Bearer <METRICS_TOKEN>" (shared/metrics.py).
        "METRICS_TOKEN": env_str("METRICS_TOKEN", "", env),
        "AUTH_PASSWORD_HASH_METHOD": env_str(
            "AUTH_PASSWORD_HASH_METHOD", DEFAULT_PASSWORD_HASH_METHOD, env
        ),
        # Dynamic client registration (RFC 7591): "token" (an initial access token minted
        # with `auth-server registration-tokens create` is required), "open" (anyone may
        # register) or "off" (no registration endpoint). See auth_server/registration.py.
        "AUTH_REGISTRATION": env_str("AUTH_REGISTRATION", "token", env).strip().lower(),
        "AUTH_REGISTRATION_OPEN_IN_PRODUCTION": env_bool(
            "AUTH_REGISTRATION_OPEN_IN_PRODUCTION", False, env
        ),
        "AUTH_REGISTRATION_LIMIT": env_str("AUTH_REGISTRATION_LIMIT", "10 per minute", env),
        "AUTH_DEVICE_AUTHORIZATION_LIMIT": env_str(
            "AUTH_DEVICE_AUTHORIZATION_LIMIT", "30 per minute", env
        ),
    }
    return cfg


def password_hash_is_weak(method: str) -> bool:
    """Whether a Werkzeug ``generate_password_hash`` method is cheaper than production
    accepts; ``ConfigError`` when it is not a method Werkzeug knows."""
    name, *args = method.split(":")
    try:
        if name == "scrypt" and len(args) in (0, 3):
            n, r, p = (int(a) for a in args) if args else (2**15, 8, 1)
            if n > 1 and n & (n - 1) == 0 and r >= 1 and p >= 1:
                return n < MIN_SCRYPT_N or r < MIN_SCRYPT_R
        elif name == "pbkdf2" and len(args) <= 2:
            digest = args[0] if args else "sha256"
            iterations = int(args[1]) if len(args) == 2 else DEFAULT_PBKDF2_ITERATIONS
            if digest in hashlib.algorithms_guaranteed and iterations >= 1:
                return iterations < MIN_PBKDF2_ITERATIONS.get(digest, iterations + 1)
    except ValueError:
        pass
    raise ConfigError(
        f"AUTH_PASSWORD_HASH_METHOD={method!r} is not a password hash method: use scrypt, "
        "scrypt:N:r:p, pbkdf2, pbkdf2:HASH or pbkdf2:HASH:ITERATIONS"
    )


def finalise(cfg: dict[str, Any]) -> None:
    """Fill development defaults, or refuse them in production (naming the variable)."""
    production = cfg["APP_ENV"] == "production"
    weak_hash = password_hash_is_weak(cfg["AUTH_PASSWORD_HASH_METHOD"])
    if cfg["AUTH_REGISTRATION"] not in REGISTRATION_MODES:
        raise ConfigError(
            f"AUTH_REGISTRATION={cfg['AUTH_REGISTRATION']!r}: use {', '.join(REGISTRATION_MODES)}"
        )
    for name in ("AUTH_PAR_TTL", "AUTH_DPOP_PROOF_WINDOW"):
        if cfg[name] < 1:
            raise ConfigError(f"{name}={cfg[name]} must be at least 1 (seconds)")
    for name in ("AUTH_DEVICE_CODE_TTL", "AUTH_DEVICE_POLL_INTERVAL"):
        if cfg[name] < 1:
            raise ConfigError(f"{name}={cfg[name]} must be at least 1 (seconds)")
    if production:
        require_production_setting(
            "AUTH_PASSWORD_HASH_METHOD",
            cfg["AUTH_PASSWORD_HASH_METHOD"],
            weak_hash,
            "too cheap against guessing from a leaked hash; use scrypt (the default, or "
            f"scrypt:N:r:p with N >= {MIN_SCRYPT_N} and r >= {MIN_SCRYPT_R}) or "
            f"pbkdf2:sha256:ITERATIONS with ITERATIONS >= {MIN_PBKDF2_ITERATIONS['sha256']}",
        )
        require_production_setting(
            "AUTH_SECRET_KEY", "", not cfg["SECRET_KEY"], "set a long random session key"
        )
        require_production_setting(
            "AUTH_REGISTRATION",
            "open",
            cfg["AUTH_REGISTRATION"] == "open" and not cfg["AUTH_REGISTRATION_OPEN_IN_PRODUCTION"],
            "anyone could register clients; use token (initial access tokens), or set "
            "AUTH_REGISTRATION_OPEN_IN_PRODUCTION=true if open registration is intended",
        )
        backend = make_url(cfg["SQLALCHEMY_DATABASE_URI"]).get_backend_name()
        require_production_setting(
            "AUTH_DATABASE_URL",
            cfg["SQLALCHEMY_DATABASE_URI"].split("@")[-1],
            backend == "sqlite",
            "use PostgreSQL (postgresql://…)",
        )
        require_production_setting(
            "AUTH_GENERATE_KEYS",
            "true",
            bool(cfg["AUTH_GENERATE_KEYS"]),
            "create keys with `auth-server keys rotate` before starting",
        )
        require_production_setting(
            "AUTH_ISSUER",
            cfg["AUTH_ISSUER"],
            not cfg["AUTH_ISSUER"].startswith("https://"),
            "the issuer must be an https:// URL",
        )
        if cfg.get("AUTH_REQUIRE_KEYS", True) and not any(Path(cfg["AUTH_KEYS_DIR"]).glob("*.pem")):
            raise ConfigError(
                f"APP_ENV=production refuses AUTH_KEYS_DIR={cfg['AUTH_KEYS_DIR']!r}: "
                "it holds no signing key; run `auth-server keys rotate`"
            )
    elif not cfg["SECRET_KEY"]:
        cfg["SECRET_KEY"] = dev_secret_key("auth_secret_key")
