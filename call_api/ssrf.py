"""Webhook URLs checked against SSRF (owned by the webhooks work; this is the interface)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def check_webhook_url(url: object, config: Mapping[str, Any]) -> str:
    """``url`` if it may receive webhooks, else ``InvalidRequest`` saying why."""
    from shared.errors import InvalidRequest

    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidRequest("The webhook URL must be an http:// or https:// URL.")
    return url
