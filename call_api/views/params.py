"""Reading parameters from form or JSON bodies, with clear errors."""

from __future__ import annotations

from typing import Any

from flask import request

from shared.errors import InvalidRequest, UnsupportedMediaType


def body() -> dict[str, Any]:
    """The request body as a flat dict: form-encoded or JSON object, else empty."""
    if request.mimetype == "application/json":
        try:
            data = request.get_json(silent=True)
        except RecursionError:  # deeply nested JSON: json.loads raises this, not ValueError
            data = None
        if not isinstance(data, dict):
            raise InvalidRequest("The body must be a JSON object.")
        return data
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.to_dict()
    if request.content_length or request.get_data(cache=True):
        raise UnsupportedMediaType()
    return {}


def form_encoded() -> bool:
    """Whether the body is ``application/x-www-form-urlencoded``, where '+' means a space."""
    return request.mimetype == "application/x-www-form-urlencoded"


def text_param(data: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"The '{name}' parameter is required.")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"The '{name}' parameter must be a string.")
    return value


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an integer.") from None
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be from {low} to {high}.")
    return value
