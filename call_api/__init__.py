"""ClickCall call API: call sessions for OAuth-authorized apps, with a per-user limit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, request

from shared import ui
from shared.app import build_app, init_database, init_platform
from shared.errors import ClickCallError

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
    from .web import init_web

    app.register_blueprint(ui.blueprint)
    app.register_blueprint(rest.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(dialer.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(meta.bp)
    init_web(app)
    init_platform(app, METRICS, render_any_error)
    app.after_request(response_headers)
    if app.config["CORS_ORIGINS"]:
        from flask_cors import CORS

        CORS(
            app,
            resources={r"/rest/*": {"origins": app.config["CORS_ORIGINS"]}},
            allow_headers=[
                "Authorization",
                "Authentication",
                "Content-Type",
                "Idempotency-Key",
                "DPoP",
            ],
            expose_headers=["Location", "WWW-Authenticate", "Idempotent-Replayed", "DPoP-Nonce"],
            methods=["GET", "POST", "PUT", "OPTIONS"],
            supports_credentials=False,
        )
    return app


def render_any_error(exc: ClickCallError) -> Response:
    """The error page on the pages (``/calls``…, not their ``.json``), JSON or XML else."""
    from .web.session import error_page, is_page_path

    if is_page_path(request.path) and not request.path.endswith(".json"):
        response = error_page(
            exc.status, PAGE_ERROR_TITLES.get(exc.status, "Error"), exc.description
        )
        for name, value in exc.headers.items():
            if name != "WWW-Authenticate":
                response.headers[name] = value
        return response
    return render_error(exc)


PAGE_ERROR_TITLES = {
    404: "Page not found",
    405: "That cannot be done here",
    413: "Too much data",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}

# As the auth server's pages: no framing, no inline script, nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
)


def response_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    from .web.session import is_page_path

    page = is_page_path(request.path)
    if page or response.mimetype == "text/html":
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
    if page or request.path.startswith(("/rest", "/admin", "/dialer")):
        # Call data is per user, and a query-string token must never be cached anywhere.
        headers["Cache-Control"] = "no-store"
    if page:
        headers.setdefault("Pragma", "no-cache")
    return response
