"""The README's "Verifying a webhook" receiver, run as written, accepts what the worker
signs (``webhooks.sign``) and refuses a tampered body, a wrong secret and a stale stamp."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from call_api import webhooks

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_receiver(secret: str) -> Any:
    text = README.read_text().split("### Verifying a webhook", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", text, flags=re.S)[:1]
    assert 'Webhook("whsec_...")' in code
    namespace: dict[str, Any] = {"__name__": "readme_receiver"}
    exec(compile(code.replace("whsec_...", secret), "README.md", "exec"), namespace)
    return namespace["app"]


@pytest.fixture
def secret() -> str:
    return webhooks.new_secret()


PAYLOAD = json.dumps(
    {
        "type": "call.completed",
        "timestamp": "2026-12-01T10:00:03.120Z",
        "data": {"token_call": "abc", "state": "completed"},
    }
)


def post(secret: str, body: str, signed_with: str | None = None, at: datetime | None = None):
    app = readme_receiver(secret)
    headers = webhooks.sign(signed_with or secret, "msg_1", at or datetime.now(UTC), PAYLOAD)
    return app.test_client().post("/hooks", data=body.encode(), headers=headers)


def test_accepts_what_the_worker_signs(secret, capsys):
    r = post(secret, PAYLOAD)
    assert r.status_code == 204
    assert capsys.readouterr().out == "msg_1 call.completed abc completed\n"


def test_refuses_a_tampered_body(secret):
    assert post(secret, PAYLOAD.replace("completed", "canceled")).status_code == 401


def test_refuses_another_secret(secret):
    assert post(secret, PAYLOAD, signed_with=webhooks.new_secret()).status_code == 401


def test_refuses_a_stale_timestamp(secret):
    stale = datetime.now(UTC) - timedelta(minutes=10)
    assert post(secret, PAYLOAD, at=stale).status_code == 401
