"""ClickCall call API: call sessions for OAuth-authorized apps, with a per-user limit."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from shared.config import load_dotenv_in_development
from shared.db import configure_engine, settle_database_options
from shared.logs import configure_logging, install_request_logging
from shared.metrics import install_metrics_endpoint
from shared.web import install_proxy_fix, register_error_handlers

from .auth import key_source_from_config
from .config import finalise, load_config
from .extensions import db, migrate
from .render import render_error

MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """App factory: defaults, then the environment, then ``config`` (tests)."""
    load_dotenv_in_development()
    app = Flask(__name__)
    app.config.update(load_config(os.environ))
    if config:
        app.config.update(config)
        settle_database_options(app.config, config)
    finalise(app.config)  # type: ignore[arg-type]

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True, compare_type=True)
    with app.app_context():
        configure_engine(db.engine)
    app.extensions["clickcall_keys"] = key_source_from_config(app.config)  # type: ignore[arg-type]

    from .views import admin, meta, rest

    app.register_blueprint(rest.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(meta.bp)
    register_error_handlers(app, render_error)
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
    configure_logging()
    install_request_logging(app, "call_api")
    install_metrics_endpoint(app)
    install_proxy_fix(app)
    return app


def response_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.path.startswith(("/rest", "/admin")):
        # Call data is per user, and a query-string token must never be cached anywhere.
        response.headers["Cache-Control"] = "no-store"
    return response
