"""HTTP plumbing shared by both services: turning errors into responses, security headers,
request bodies that are refused rather than cut short, and JSON that is refused rather than
half-understood."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import IO, Any, cast

from flask import Flask, Request, Response, current_app, request
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

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


# --- request bodies: refused over the limit, never truncated --------------------------------


class _NoTruncation(LimitedStream):
    """A body without ``Content-Length`` (``Transfer-Encoding: chunked``), read up to
    ``MAX_CONTENT_LENGTH`` bytes; one byte more is a 413.

    Werkzeug's own wrapper for such a body (``LimitedStream(..., is_max=True)``) stops
    reading at the limit without looking further, so ``get_data()`` and form parsing get
    the first ``MAX_CONTENT_LENGTH`` bytes of a longer body and the request is processed
    on a silently truncated input. Here the limit is one byte past the maximum, and reading
    that byte raises.
    """

    def __init__(self, stream: IO[bytes], maximum: int) -> None:
        super().__init__(stream, maximum + 1, is_max=True)
        self.maximum = maximum

    def readinto(self, b: Any) -> int | None:
        size = super().readinto(b)
        if self.tell() > self.maximum:
            raise RequestEntityTooLarge()
        return size


class BodyLimitRequest(Request):
    """Flask's request, with ``MAX_CONTENT_LENGTH`` enforced on bodies of any framing.

    A declared ``Content-Length`` over the limit is refused by Werkzeug before anything is
    read. A chunked body (a server such as gunicorn sets ``wsgi.input_terminated``) has no
    length to check up front: it is read through :class:`_NoTruncation`, a 413 as soon as it
    passes the limit.
    """

    @cached_property
    def stream(self) -> IO[bytes]:
        maximum = self.max_content_length
        if (
            maximum is not None
            and self.content_length is None
            and self.environ.get("wsgi.input_terminated")
            and not self.shallow
        ):
            return cast(IO[bytes], _NoTruncation(self.environ["wsgi.input"], maximum))
        return super().stream


# --- JSON: what json.loads accepts but nothing here can use is a 400 ------------------------

# No value either service takes is anywhere near this long; Python's int() gives up at 4,300
# digits (a ValueError deep in a view), and a float this long is only noise.
MAX_JSON_NUMBER_LENGTH = 100


class UnacceptableJSON(ValueError):
    """Well-formed JSON whose value cannot be used: the message says why (for the client)."""


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_NUMBER_LENGTH:
        raise UnacceptableJSON(
            f"The JSON body holds a number of more than {MAX_JSON_NUMBER_LENGTH} digits."
        )
    return int(text)


def _json_float(text: str) -> float:
    if len(text) > MAX_JSON_NUMBER_LENGTH:
        raise UnacceptableJSON(
            f"The JSON body holds a number of more than {MAX_JSON_NUMBER_LENGTH} characters."
        )
    value = float(text)
    if not math.isfinite(value):
        raise UnacceptableJSON("The JSON body holds a number too large to represent.")
    return value


def _json_constant(name: str) -> Any:
    raise UnacceptableJSON(f"The JSON body holds {name}, which is not a JSON number.")


def _valid_unicode(text: str) -> bool:
    """No lone surrogate (``"\\udc80"`` is valid JSON but not text: it cannot be encoded)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_strings(value: Any) -> None:
    """Every key and string in ``value`` is valid Unicode (iteratively: any depth)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            strings: list[Any] = [item]
        elif isinstance(item, dict):
            strings = list(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
            continue
        else:
            continue
        if not all(_valid_unicode(s) for s in strings):
            raise UnacceptableJSON(
                "The JSON body holds a string that is not valid Unicode (a lone surrogate "
                "such as \\udc80); send UTF-8 text."
            )


def parse_json(data: str | bytes) -> Any:
    """``json.loads``, refusing with :class:`UnacceptableJSON` what it would let through but
    no endpoint can use: lone surrogates (``\\udc80``, or their bytes, which ``json.loads``
    decodes with ``surrogatepass``), numbers over ``MAX_JSON_NUMBER_LENGTH`` characters,
    ``1e309`` (infinity) and the non-JSON ``NaN``/``Infinity``. Malformed JSON is the
    usual ``ValueError`` (``RecursionError`` when nested too deep).
    """
    value = json.loads(
        data, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant
    )
    _check_strings(value)
    return value


class StrictJSONProvider(DefaultJSONProvider):
    """The app's JSON: loading goes through :func:`parse_json`, so ``request.get_json()``
    anywhere refuses the same JSON with a 400 (``json_object_body`` also says why)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return parse_json(s)


def json_object_body() -> dict[str, Any]:
    """The request body as a JSON object; ``InvalidRequest`` (400) otherwise, saying why when
    the JSON is well-formed but unusable."""
    try:
        data = parse_json(request.get_data(cache=True))
    except UnacceptableJSON as exc:
        raise InvalidRequest(str(exc)) from None
    except (ValueError, RecursionError):  # malformed; nested deeper than the decoder goes
        data = None
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return data


def install_body_rules(app: Flask) -> None:
    """Bodies over ``MAX_CONTENT_LENGTH`` are a 413 whatever their framing; JSON is strict."""
    app.request_class = BodyLimitRequest
    app.json = StrictJSONProvider(app)
