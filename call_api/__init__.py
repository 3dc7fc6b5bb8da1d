"""ClickCall call API: call sessions for OAuth-authorized apps, with a per-user limit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from shared.app import build_app, init_database, init_platform

from .auth import key_source_from_config
from .config import finalise, load_config
from .extensions import db, migrate
from .metrics import METRICS
from .render import render_error
from .revocations import feed_from_config

MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """App factory: defaults, then the environment, then ``config`` (tests)."""
    app = build_app(__name__, load_config, finalise, config)
    init_database(app, db, migrate, MIGRATIONS)
    app.extensions["clickcall_keys"] = key_source_from_config(app.config)  # type: ignore[arg-type]
    # Polled by a thread each worker starts on its first request (after gunicorn forks).
    app.extensions["clickcall_revocations"] = feed_from_config(app.config)

    from .views import admin, dialer, meta, rest, webhooks

    app.register_blueprint(rest.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(dialer.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(meta.bp)
    init_platform(app, METRICS, render_error)
    app.after_request(response_headers)
    if app.config["CORS_ORIGINS"]:
        from flask_cors import CORS

        CORS(
            app,
            resources={r"/rest/*": {"origins": app.config["CORS_ORIGINS"]}},
            allow_headers=["Authorization", "Authentication", "Content-Type", "Idempotency-Key"],
            expose_headers=["Location", "WWW-Authenticate", "Idempotent-Replayed"],
            methods=["GET", "POST", "PUT", "OPTIONS"],
            supports_credentials=False,
        )
    return app


def response_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith(("/rest", "/admin", "/dialer")):
        # Call data is per user, and a query-string token must never be cached anywhere.
        response.headers["Cache-Control"] = "no-store"
    return response
