"""``config show``: the effective configuration with secrets masked."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import make_url

SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN_KEY", "PRIVATE", "METRICS_TOKEN")


def masked(config: dict[str, Any], keys: list[str]) -> str:
    out: dict[str, Any] = {}
    for key in keys:
        if key not in config:
            continue
        value = config[key]
        if any(word in key for word in SECRET_WORDS):
            value = "********" if value else ""
        elif key == "SQLALCHEMY_DATABASE_URI" or key.endswith("_URI") and "://" in str(value):
            try:
                value = make_url(str(value)).render_as_string(hide_password=True)
            except Exception:
                value = "********"
        elif callable(value):
            value = f"{value.__module__}.{value.__qualname__}"
        out[key] = value
    return json.dumps(out, indent=2, default=str)
