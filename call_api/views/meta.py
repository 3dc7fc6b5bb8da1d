"""The OpenAPI description and the health check."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from shared.errors import DBConnectionError

from ..extensions import db
from ..openapi import spec

bp = Blueprint("meta", __name__)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(spec())


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness and readiness: the process answers and the database answers."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:
        raise DBConnectionError() from exc
    keys = current_app.extensions["clickcall_keys"]
    return jsonify(
        status="ok", database="ok", keys="loaded" if keys.loaded() else "not_yet_fetched"
    )
