"""HTTP plumbing shared by both services: turning errors into responses, security headers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Flask, Response, current_app
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .errors import (
    ClickCallError,
    DBConnectionError,
    InvalidRequest,
    MethodNotAllowed,
    ObjectDoesNotExist,
    PayloadTooLarge,
    ServerError,
    TooManyRequests,
)

log = logging.getLogger("clickcall")

Renderer = Callable[[ClickCallError], Response]


def http_exception_to_error(exc: HTTPException) -> ClickCallError:
    if isinstance(exc, RequestEntityTooLarge) or exc.code == 413:
        return PayloadTooLarge()
    if exc.code == 404:
        return ObjectDoesNotExist("No such URL.")
    if exc.code == 405:
        return MethodNotAllowed()
    if exc.code == 429:
        return too_many_requests()
    if exc.code is not None and 400 <= exc.code < 500:
        err = InvalidRequest(exc.description or "Bad request.")
        err.status = exc.code
        return err
    return ServerError()


def retry_after_seconds() -> int | None:
    """Seconds until the limit this request broke lets the client in again (Flask-Limiter)."""
    for limiter in current_app.extensions.get("limiter", ()):
        try:
            limit = limiter.current_limit
            if limit is not None and limit.breached:
                return max(1, int(limit.reset_at - time.time()))
        except Exception:  # the limiter's storage is unreachable: no figure to give
            log.debug("could not read the breached rate limit", exc_info=True)
    return None


def too_many_requests() -> TooManyRequests:
    """A 429 that says when to retry: in its description and in ``Retry-After``.

    Flask-Limiter sets ``Retry-After`` again after the request, from the same window.
    """
    seconds = retry_after_seconds()
    if seconds is None:
        return TooManyRequests()
    unit = "second" if seconds == 1 else "seconds"
    return TooManyRequests(
        f"Too many attempts; try again in {seconds} {unit}.",
        headers={"Retry-After": str(seconds)},
    )


def register_error_handlers(app: Flask, render: Renderer) -> None:
    """Every error becomes ``render(ClickCallError)``; nothing leaks a traceback."""

    @app.errorhandler(ClickCallError)
    def _clickcall(exc: ClickCallError) -> Response:
        return render(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        response = render(http_exception_to_error(exc))
        if exc.code == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def _db_down(exc: Exception) -> Response:
        log.warning("database unavailable: %s", type(exc).__name__)
        _rollback(app)
        return render(DBConnectionError())

    @app.errorhandler(DBAPIError)
    def _db_error(exc: DBAPIError) -> Response:
        _rollback(app)
        if exc.connection_invalidated:
            return render(DBConnectionError())
        log.exception("database error")
        return render(ServerError())

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        _rollback(app)
        return render(ServerError())

    @app.teardown_appcontext
    def _release_session(exc: BaseException | None) -> None:
        # Registered after Flask-SQLAlchemy's teardown, so it runs first (reverse order).
        _remove_session(app)


def _rollback(app: Flask) -> None:
    db = app.extensions.get("sqlalchemy")
    if db is None:
        return
    try:
        db.session.rollback()
    except Exception:  # pragma: no cover - the connection is already gone
        log.debug("rollback after a database error failed", exc_info=True)


def _remove_session(app: Flask) -> None:
    """End the request's session without letting a dead connection escape the teardown.

    A response can be complete (say a 201 whose post-commit refresh left a read transaction
    open) when the database goes away; the session's closing ROLLBACK then fails, and an
    exception in a teardown bypasses the error handlers: gunicorn answers its own HTML 500
    for a call that was in fact created. The connection is invalidated by then; drop it.
    """
    db = app.extensions.get("sqlalchemy")
    if db is None:
        return
    try:
        db.session.remove()
    except SQLAlchemyError as exc:
        log.warning("database unavailable while closing the session: %s", type(exc).__name__)
        try:
            db.session.remove()
        except SQLAlchemyError:  # pragma: no cover - nothing left to release
            db.session.registry.clear()


def install_proxy_fix(app: Flask) -> None:
    """Honour ``X-Forwarded-*`` only behind ``TRUSTED_PROXIES`` (default 0) proxies."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    hops = int(app.config.get("TRUSTED_PROXIES", 0))
    if hops > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )
