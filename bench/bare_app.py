"""Baseline (a) of `make bench`: the framework ceiling.

A bare Flask app with one endpoint returning a small JSON body, served by the same
gunicorn command and settings as the services (``deploy/gunicorn.conf.py``, the same
workers and threads)::

    gunicorn -c deploy/gunicorn.conf.py 'bench.bare_app:create_app()'

No database, no logging, no middleware: whatever a service does below this number is the
cost of its own work.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/ping")
    def ping() -> Response:
        return jsonify(status="ok", service="bare-flask")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    return app
