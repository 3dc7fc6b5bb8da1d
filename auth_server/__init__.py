"""ClickCall authorization server: OAuth 2.0 (Authlib) issuing RFC 9068 JWT access tokens."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, render_template, request

from shared import ui
from shared.app import build_app, init_database, init_platform
from shared.errors import ClickCallError

from .config import finalise, load_config
from .extensions import db, limiter, migrate
from .keyring import KeyRing
from .metrics import METRICS
from .oauth2 import config_oauth

# Paths a browser app on another origin may call (never the login or consent pages).
CORS_PATHS = (
    "/oauth/token",
    "/oauth/revoke",
    "/.well-known/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
    "/oauth/userinfo",
    "/oauth/par",
)

MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """App factory: defaults, then the environment, then ``config`` (tests)."""
    app = build_app(__name__, load_config, finalise, config)
    init_database(app, db, migrate, MIGRATIONS)
    app.extensions["clickcall_keyring"] = KeyRing(
        app.config["AUTH_KEYS_DIR"],
        algorithm=app.config["AUTH_SIGNING_ALG"],
        generate=app.config["AUTH_GENERATE_KEYS"],
    )
    config_oauth(app)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)

    from .views import account, console, device, login, meta, oauth, oidc, registration

    app.register_blueprint(ui.blueprint)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(login.bp)
    app.register_blueprint(meta.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(oidc.bp)
    app.register_blueprint(registration.bp)
    app.register_blueprint(device.bp)
    init_platform(app, METRICS, render_error)
    app.after_request(security_headers)
    if app.config["CORS_ORIGINS"]:
        from flask_cors import CORS

        CORS(
            app,
            resources={path: {"origins": app.config["CORS_ORIGINS"]} for path in CORS_PATHS},
            supports_credentials=False,
            allow_headers=["Authorization", "Content-Type", "DPoP"],
            expose_headers=["DPoP-Nonce", "WWW-Authenticate"],
            methods=["GET", "POST", "OPTIONS"],
        )
    return app


def render_error(exc: ClickCallError) -> Response:
    """JSON for API callers and ``Accept: application/json``, the error page otherwise."""
    from .flow import wants_json

    if (
        request.path.startswith(
            (
                "/oauth/token",
                "/oauth/revoke",
                "/oauth/introspect",
                "/oauth/userinfo",
                "/oauth/register",
                "/oauth/device_authorization",
                "/oauth/par",
                "/.well-known",
                "/healthz",
            )
        )
        or wants_json()
    ):
        response = jsonify(exc.body())
    else:
        response = Response(
            render_template("error.html", error=exc.error, description=exc.description)
        )
    response.status_code = exc.status
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


def security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
    )
    headers.setdefault("Referrer-Policy", "no-referrer")
    if not request.path.startswith(("/.well-known", "/static", "/oauth/revocations")):
        headers["Cache-Control"] = "no-store"
        headers.setdefault("Pragma", "no-cache")
    return response
