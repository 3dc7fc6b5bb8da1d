"""What both app factories do the same way: configuration layering, database and
migrations, error rendering, request logs, metrics and proxy handling."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text

from .config import load_dotenv_in_development
from .db import configure_engine, settle_database_options
from .errors import DBConnectionError
from .logs import configure_logging, install_request_logging
from .metrics import ServiceMetrics, install_metrics_endpoint
from .web import Renderer, install_body_rules, install_proxy_fix, register_error_handlers


def build_app(
    import_name: str,
    load_config: Callable[[Mapping[str, str]], dict[str, Any]],
    finalise: Callable[[dict[str, Any]], None],
    overrides: Mapping[str, Any] | None,
) -> Flask:
    """A Flask app configured by defaults, then the environment, then ``overrides``."""
    load_dotenv_in_development()
    app = Flask(import_name)
    install_body_rules(app)
    app.config.update(load_config(os.environ))
    if overrides:
        app.config.update(overrides)
        settle_database_options(app.config, overrides)
    finalise(app.config)  # type: ignore[arg-type]
    return app


def init_database(app: Flask, db: SQLAlchemy, migrate: Migrate, migrations: str) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=migrations, render_as_batch=True, compare_type=True)
    with app.app_context():
        configure_engine(db.engine)


def init_platform(app: Flask, metrics: ServiceMetrics, render: Renderer) -> None:
    """Errors, JSON request logs, ``/metrics`` and ``TRUSTED_PROXIES``."""
    register_error_handlers(app, render)
    configure_logging()
    install_request_logging(app, metrics.service)
    install_metrics_endpoint(app, metrics)
    install_proxy_fix(app)


def ping_database(db: SQLAlchemy) -> None:
    """``SELECT 1``, or ``DBConnectionError`` (a 503) when the database does not answer."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:
        raise DBConnectionError() from exc
