"""Reading parameters from form or JSON bodies, with clear errors."""

from __future__ import annotations

import re
from typing import Any

from flask import request

from shared.errors import InvalidRequest, UnsupportedMediaType
from shared.web import json_object_body

# An integer parameter: ASCII digits, optionally signed, short enough to mean something.
# int() would also take "1_000" or Arabic-Indic digits, and raises ValueError (a 500 where
# nobody catches it) past 4,300 digits.
MAX_INTEGER_DIGITS = 18
_INTEGER = re.compile(rf"[-+]?[0-9]{{1,{MAX_INTEGER_DIGITS}}}")


def body() -> dict[str, Any]:
    """The request body as a flat dict: form-encoded or JSON object, else empty.

    JSON goes through ``shared.web.json_object_body``: lone surrogates, over-long numbers
    and ``NaN`` are a 400 saying so, never a 500 further on.
    """
    if request.mimetype == "application/json":
        return json_object_body()
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


def parse_integer(raw: str) -> int | None:
    """``raw`` (surrounding spaces allowed) as an integer of at most ``MAX_INTEGER_DIGITS``
    ASCII digits; ``None`` when it is anything else, without ever calling ``int()`` on it."""
    text = raw.strip()
    return int(text) if _INTEGER.fullmatch(text) else None


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    value = parse_integer(raw)
    if value is None:
        raise InvalidRequest(f"'{name}' must be an integer.")
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be from {low} to {high}.")
    return value
