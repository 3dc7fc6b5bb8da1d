"""Responses in JSON, or XML when asked for (``Accept: application/xml`` or ``?format=xml``)."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree as ET

from flask import Response, request

from shared.errors import ClickCallError, NotAcceptable

JSON = "application/json"
XML = "application/xml"


def wants_xml() -> bool:
    fmt = request.args.get("format")
    if fmt is not None:
        if fmt.lower() == "xml":
            return True
        if fmt.lower() == "json":
            return False
        raise NotAcceptable("format must be json or xml.")
    accept = request.accept_mimetypes
    if not accept or not request.headers.get("Accept"):
        return False
    best = accept.best_match([JSON, XML, "text/xml"])
    if best is None:
        if accept.best_match(["*/*"]) is None:
            raise NotAcceptable()
        return False
    return best in (XML, "text/xml")


def _xml_value(parent: ET.Element, key: str, value: Any) -> None:
    if isinstance(value, list):
        child = ET.SubElement(parent, key)
        item_name = key[:-1] if key.endswith("s") else "item"
        for item in value:
            _xml_value(child, item_name, item)
        return
    child = ET.SubElement(parent, key)
    if isinstance(value, dict):
        for k, v in value.items():
            _xml_value(child, k, v)
    elif value is None:
        child.set("nil", "true")
    elif isinstance(value, bool):
        child.text = "true" if value else "false"
    else:
        child.text = _xml_safe(str(value))


def _xml_safe(text: str) -> str:
    """Drop characters XML 1.0 cannot carry (validation keeps them out, this is the backstop)."""
    return "".join(
        ch
        for ch in text
        if ch in "\t\n\r"
        or 0x20 <= ord(ch) <= 0xD7FF
        or 0xE000 <= ord(ch) <= 0xFFFD
        or 0x10000 <= ord(ch) <= 0x10FFFF
    )


def to_xml(root: str, body: dict[str, Any]) -> bytes:
    element = ET.Element(root)
    for key, value in body.items():
        _xml_value(element, key, value)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element, encoding="utf-8")


def respond(
    body: dict[str, Any], status: int = 200, root: str = "response", xml: bool | None = None
) -> Response:
    use_xml = wants_xml() if xml is None else xml
    if use_xml:
        response = Response(to_xml(root, body), status=status, mimetype=XML)
    else:
        response = Response(json.dumps(body), status=status, mimetype=JSON)
    response.vary.add("Accept")
    return response


def render_error(exc: ClickCallError) -> Response:
    try:
        use_xml = wants_xml()
    except NotAcceptable:
        use_xml = False
    response = respond(exc.body(), exc.status, root="error_response", xml=use_xml)
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response
