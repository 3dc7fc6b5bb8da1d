"""The call API's settings: defaults, then the environment, then a test mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import make_url

from shared.config import (
    ConfigError,
    dev_secret_key,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    is_production,
    require_production_setting,
    var_dir,
)
from shared.db import engine_options, normalise_url
from shared.keys import SUPPORTED_ALGORITHMS


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    production = is_production(env)
    database_url = normalise_url(
        env_str("CALL_DATABASE_URL", f"sqlite:///{var_dir()}/calls.db", env)
    )
    issuer = env_str("AUTH_ISSUER", "http://127.0.0.1:8888", env).rstrip("/")
    algorithms = env_list("CALL_ALGORITHMS", env) or ["RS256"]
    statement_timeout = env_int("DB_STATEMENT_TIMEOUT_MS", 5000, env)
    return {
        "APP_ENV": "production" if production else "development",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url, statement_timeout),
        "DB_STATEMENT_TIMEOUT_MS": statement_timeout,
        "AUTH_ISSUER": issuer,
        "CALL_AUDIENCE": env_str("CALL_AUDIENCE", "http://127.0.0.1:8889", env),
        "CALL_JWKS_URL": env_str("CALL_JWKS_URL", f"{issuer}/.well-known/jwks.json", env),
        "CALL_PUBLIC_KEY_FILE": env_str("CALL_PUBLIC_KEY_FILE", "", env) or None,
        "CALL_ALGORITHMS": algorithms,
        "CALL_TOKEN_LEEWAY": env_int("CALL_TOKEN_LEEWAY", 30, env),
        "CALL_JWKS_CACHE_TTL": env_int("CALL_JWKS_CACHE_TTL", 300, env),
        "CALL_JWKS_MIN_REFRESH_INTERVAL": env_int("CALL_JWKS_MIN_REFRESH_INTERVAL", 10, env),
        "CALL_JWKS_TIMEOUT": env_int("CALL_JWKS_TIMEOUT", 3, env),
        # The auth server's revocation feed (call_api/revocations.py); interval 0: off.
        "CALL_REVOCATION_URL": env_str("CALL_REVOCATION_URL", f"{issuer}/oauth/revocations", env),
        "CALL_REVOCATION_POLL_INTERVAL": env_int("CALL_REVOCATION_POLL_INTERVAL", 2, env),
        "CALL_REVOCATION_TIMEOUT": env_int("CALL_REVOCATION_TIMEOUT", 2, env),
        "CALL_MAX_ONGOING_DEFAULT": env_int("CALL_MAX_ONGOING_DEFAULT", 2, env),
        "CALL_MAX_DURATION": env_int("CALL_MAX_DURATION", 14400, env),
        # The dialer interface (call_api/dialer.py) and the webhook outbox (call_api/webhooks.py).
        "CALL_DIALER_LEASE_SECONDS": env_int("CALL_DIALER_LEASE_SECONDS", 30, env),
        "CALL_DIALER_MAX_CLAIMS": env_int("CALL_DIALER_MAX_CLAIMS", 3, env),
        "CALL_WEBHOOK_RETRY_FOR": env_int("CALL_WEBHOOK_RETRY_FOR", 86_400, env),
        # The webhook worker (call_api/worker.py) and the SSRF rules (call_api/ssrf.py).
        "CALL_WEBHOOK_TIMEOUT": env_float("CALL_WEBHOOK_TIMEOUT", 5, env),
        "CALL_WEBHOOK_LEASE_SECONDS": env_float("CALL_WEBHOOK_LEASE_SECONDS", 60, env),
        "CALL_WEBHOOK_BACKOFF_BASE": env_float("CALL_WEBHOOK_BACKOFF_BASE", 5, env),
        "CALL_WEBHOOK_BACKOFF_MAX": env_float("CALL_WEBHOOK_BACKOFF_MAX", 3600, env),
        "CALL_WEBHOOK_POLL_INTERVAL": env_float("CALL_WEBHOOK_POLL_INTERVAL", 0.5, env),
        "CALL_WEBHOOK_BATCH": env_int("CALL_WEBHOOK_BATCH", 20, env),
        # Unset: the default for APP_ENV, filled in by finalise; "none": no network at all.
        "CALL_WEBHOOK_ALLOWED_NETWORKS": env_list("CALL_WEBHOOK_ALLOWED_NETWORKS", env) or None,
        "CALL_DEFAULT_REGION": env_str("CALL_DEFAULT_REGION", "", env) or None,
        "CALL_ALLOW_QUERY_TOKEN": env_bool("CALL_ALLOW_QUERY_TOKEN", True, env),
        "CORS_ORIGINS": env_list("CORS_ORIGINS", env),
        "MAX_CONTENT_LENGTH": env_int("MAX_CONTENT_LENGTH", 16 * 1024, env),
        "JSON_SORT_KEYS": False,
        "TRUSTED_PROXIES": env_int("TRUSTED_PROXIES", 0, env),
        # When set, GET /metrics needs "Authorization: Bearer <METRICS_TOKEN>" (shared/metrics.py).
        "METRICS_TOKEN": env_str("METRICS_TOKEN", "", env),
        # The pages for people (call_api/web): an OAuth client of the auth server.
        "CALL_WEB_CLIENT_ID": env_str("CALL_WEB_CLIENT_ID", "", env),
        "CALL_WEB_CLIENT_SECRET": env_str("CALL_WEB_CLIENT_SECRET", "", env),
        "CALL_WEB_URL": env_str("CALL_WEB_URL", "http://127.0.0.1:8889", env).rstrip("/"),
        "CALL_SECRET_KEY": env_str("CALL_SECRET_KEY", "", env),
        # DPoP-bound tokens (call_api/dpop.py): how far a proof's iat may be from now (either
        # way), server nonces (keyed from CALL_SECRET_KEY), Redis for the jti replay cache.
        "CALL_DPOP_PROOF_WINDOW": env_int("CALL_DPOP_PROOF_WINDOW", 60, env),
        "CALL_DPOP_NONCE": env_bool("CALL_DPOP_NONCE", False, env),
        "CALL_DPOP_REDIS_URL": env_str("CALL_DPOP_REDIS_URL", "", env),
    }


MIN_SECRET_KEY_LENGTH = 32


def _check_web_settings(cfg: dict[str, Any]) -> None:
    """The pages' OAuth client. Unset ``CALL_WEB_CLIENT_ID``: the pages answer 503 (saying
    how to register the client), and nothing else is required, in production too."""
    cfg["CALL_WEB_URL"] = str(cfg["CALL_WEB_URL"]).rstrip("/")
    if not cfg["CALL_WEB_URL"].startswith(("http://", "https://")):
        raise ConfigError("CALL_WEB_URL must be an http:// or https:// URL")
    production = cfg["APP_ENV"] == "production"
    if production and cfg["CALL_WEB_CLIENT_ID"]:
        require_production_setting(
            "CALL_SECRET_KEY",
            "",
            len(cfg["CALL_SECRET_KEY"]) < MIN_SECRET_KEY_LENGTH,
            f"set a random key of at least {MIN_SECRET_KEY_LENGTH} characters "
            "(it encrypts the pages' tokens and sign-in cookies)",
        )
        require_production_setting(
            "CALL_WEB_CLIENT_SECRET",
            "",
            not cfg["CALL_WEB_CLIENT_SECRET"],
            "the pages sign people in as a confidential client: set its secret",
        )
        require_production_setting(
            "CALL_WEB_URL",
            cfg["CALL_WEB_URL"],
            not cfg["CALL_WEB_URL"].startswith("https://"),
            "the pages' public URL must be https:// (their cookies are Secure)",
        )
    elif not production and cfg["CALL_WEB_CLIENT_ID"] and not cfg["CALL_SECRET_KEY"]:
        cfg["CALL_SECRET_KEY"] = dev_secret_key("call_secret_key")


def finalise(cfg: dict[str, Any]) -> None:
    """Check the settings; in production refuse development defaults, naming the variable."""
    for alg in cfg["CALL_ALGORITHMS"]:
        if alg not in SUPPORTED_ALGORITHMS:
            raise ConfigError(
                f"CALL_ALGORITHMS has {alg!r}; only {', '.join(SUPPORTED_ALGORITHMS)} are allowed"
            )
    if cfg["CALL_MAX_ONGOING_DEFAULT"] < 0:
        raise ConfigError("CALL_MAX_ONGOING_DEFAULT must be 0 or more")
    if cfg["CALL_MAX_DURATION"] <= 0:
        raise ConfigError("CALL_MAX_DURATION must be positive")
    for name in ("CALL_DIALER_LEASE_SECONDS", "CALL_DIALER_MAX_CLAIMS", "CALL_WEBHOOK_RETRY_FOR"):
        if cfg[name] <= 0:
            raise ConfigError(f"{name} must be positive")
    _check_webhook_settings(cfg)
    _check_web_settings(cfg)
    _check_dpop_settings(cfg)
    if cfg["CALL_REVOCATION_POLL_INTERVAL"] < 0:
        raise ConfigError("CALL_REVOCATION_POLL_INTERVAL must be 0 (off) or more")
    if cfg["CALL_REVOCATION_TIMEOUT"] <= 0:
        raise ConfigError("CALL_REVOCATION_TIMEOUT must be positive")
    if cfg["APP_ENV"] != "production":
        return
    backend = make_url(cfg["SQLALCHEMY_DATABASE_URI"]).get_backend_name()
    require_production_setting(
        "CALL_DATABASE_URL",
        cfg["SQLALCHEMY_DATABASE_URI"].split("@")[-1],
        backend == "sqlite",
        "use PostgreSQL (postgresql://…)",
    )
    require_production_setting(
        "AUTH_ISSUER",
        cfg["AUTH_ISSUER"],
        not cfg["AUTH_ISSUER"].startswith("https://"),
        "the issuer must be an https:// URL",
    )
    if cfg["CALL_REVOCATION_POLL_INTERVAL"]:
        require_production_setting(
            "CALL_REVOCATION_URL",
            cfg["CALL_REVOCATION_URL"],
            not cfg["CALL_REVOCATION_URL"].startswith("https://"),
            "read the revocation feed over https:// (or set CALL_REVOCATION_POLL_INTERVAL=0)",
        )
    if not cfg["CALL_PUBLIC_KEY_FILE"]:
        require_production_setting(
            "CALL_JWKS_URL",
            cfg["CALL_JWKS_URL"],
            not cfg["CALL_JWKS_URL"].startswith("https://"),
            "fetch keys over https:// (or set CALL_PUBLIC_KEY_FILE)",
        )


def _check_dpop_settings(cfg: dict[str, Any]) -> None:
    if cfg["CALL_DPOP_PROOF_WINDOW"] < 1:
        raise ConfigError("CALL_DPOP_PROOF_WINDOW must be at least 1 (seconds)")
    if cfg["CALL_DPOP_NONCE"] and not cfg["CALL_SECRET_KEY"]:
        if cfg["APP_ENV"] == "production":
            raise ConfigError(
                "CALL_DPOP_NONCE=true needs CALL_SECRET_KEY (the replicas' shared nonce key)"
            )
        cfg["CALL_SECRET_KEY"] = dev_secret_key("call_secret_key")


MAX_WEBHOOK_BATCH = 200


def _check_webhook_settings(cfg: dict[str, Any]) -> None:
    """The worker's numbers, and ``CALL_WEBHOOK_ALLOWED_NETWORKS`` parsed into CIDR text.

    The lease must outlast a delivery (the POST's timeout, once per resolved address it
    tries, at most two): a lease that ran out mid-POST would let a second worker send the
    same event at the same time.
    """
    from .ssrf import parse_networks

    for name in (
        "CALL_WEBHOOK_TIMEOUT",
        "CALL_WEBHOOK_LEASE_SECONDS",
        "CALL_WEBHOOK_BACKOFF_BASE",
        "CALL_WEBHOOK_BACKOFF_MAX",
        "CALL_WEBHOOK_POLL_INTERVAL",
    ):
        if not cfg[name] > 0:
            raise ConfigError(f"{name} must be positive")
    if cfg["CALL_WEBHOOK_BACKOFF_MAX"] < cfg["CALL_WEBHOOK_BACKOFF_BASE"]:
        raise ConfigError("CALL_WEBHOOK_BACKOFF_MAX must be at least CALL_WEBHOOK_BACKOFF_BASE")
    if cfg["CALL_WEBHOOK_LEASE_SECONDS"] <= 2 * cfg["CALL_WEBHOOK_TIMEOUT"]:
        raise ConfigError(
            "CALL_WEBHOOK_LEASE_SECONDS must be more than twice CALL_WEBHOOK_TIMEOUT "
            "(a delivery must end before its lease does)"
        )
    if not 1 <= cfg["CALL_WEBHOOK_BATCH"] <= MAX_WEBHOOK_BATCH:
        raise ConfigError(f"CALL_WEBHOOK_BATCH must be from 1 to {MAX_WEBHOOK_BATCH}")
    cfg["CALL_WEBHOOK_ALLOWED_NETWORKS"] = [
        str(network)
        for network in parse_networks(
            cfg.get("CALL_WEBHOOK_ALLOWED_NETWORKS"), cfg["APP_ENV"] == "production"
        )
    ]
