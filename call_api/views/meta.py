"""The OpenAPI description and the health check."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from shared.app import ping_database

from ..extensions import db
from ..openapi import spec

bp = Blueprint("meta", __name__)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(spec())


@bp.get("/readyz")
def readyz() -> Response:
    """Ready for traffic: the database answers and verification keys are loaded.

    ``revocations`` says how fresh this process's copy of the auth server's revocation
    feed is; a stale copy is reported, not a reason to refuse traffic (the call API keeps
    serving on what it last knew while the auth server is away).
    """
    ping_database(db)
    if not current_app.extensions["clickcall_keys"].ensure_loaded():
        response = jsonify(
            error="service_unavailable",
            error_description="No verification keys: the JWKS could not be fetched.",
        )
        response.status_code = 503
        return response
    feed = current_app.extensions["clickcall_revocations"]
    feed.start()
    return jsonify(status="ready", database="ok", keys="loaded", revocations=feed.status())


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness and readiness: the process answers and the database answers."""
    ping_database(db)
    keys = current_app.extensions["clickcall_keys"]
    return jsonify(
        status="ok", database="ok", keys="loaded" if keys.loaded() else "not_yet_fetched"
    )
