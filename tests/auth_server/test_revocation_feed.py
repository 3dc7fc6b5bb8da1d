"""The revocation feed (``GET /oauth/revocations``): every way a token is revoked writes an
entry the call API can match against a token's claims, and the feed pages by cursor.

What a resource server does with it: tests/call_api/test_revocations.py (in-process) and
tests/security/test_revocation_reaches_call_api.py (real processes)."""

from __future__ import annotations

import hashlib
import time

import jwt
import pytest

from tests.auth_server.helpers import JSON
from tests.conftest import make_client, make_user

FEED_KEYS = {"revocations", "cursor", "more"}


def feed(client, after: int | str = 0) -> dict:
    r = client.get(f"/oauth/revocations?after={after}")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    assert set(r.json) == FEED_KEYS
    return dict(r.json)


def entries(client, after: int = 0) -> list[dict]:
    """The feed's entries without their ids (which tests compare separately)."""
    return [{k: v for k, v in e.items() if k != "id"} for e in feed(client, after)["revocations"]]


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def revoke(client, app_client, token: str, hint: str | None = None):
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    r = client.post("/oauth/revoke", data=data, headers=app_client.basic())
    assert r.status_code == 200, r.get_data(as_text=True)


def refresh(client, app_client, refresh_token: str):
    return client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers=app_client.basic(),
    )


def test_empty_feed(client):
    """Nothing revoked: no entries, cursor 0, cacheable for a second, no session cookie."""
    r = client.get("/oauth/revocations")
    assert r.status_code == 200
    assert r.json == {"revocations": [], "cursor": 0, "more": False}
    assert r.headers["Cache-Control"] == "public, max-age=1"
    assert "Set-Cookie" not in r.headers


@pytest.mark.parametrize("after", ["-1", "x", "1.5", "1e3", "１", "9" * 19, "9" * 4301, ""])
def test_a_bad_cursor_is_a_400(client, after):
    r = client.get("/oauth/revocations", query_string={"after": after})
    assert r.status_code == 400
    assert r.json == {
        "error": "invalid_request",
        "error_description": "The 'after' parameter must be a cursor: a whole number from 0 "
        "(a previous answer's 'cursor').",
    }


def test_tokens_name_their_grant_and_refreshes_keep_it(client, flow, user, web_client):
    """``grant_id``: one per authorization, kept by every refresh of it."""
    first = flow.token(user, web_client)
    second = flow.token(user, web_client)
    grant = claims_of(first["access_token"])["grant_id"]
    assert grant != claims_of(second["access_token"])["grant_id"]
    r = refresh(client, web_client, first["refresh_token"])
    assert r.status_code == 200
    assert claims_of(r.json["access_token"])["grant_id"] == grant
    r = refresh(client, web_client, r.json["refresh_token"])
    assert claims_of(r.json["access_token"])["grant_id"] == grant


def test_revoking_an_access_token_publishes_its_jti(client, flow, user, web_client):
    token = flow.token(user, web_client)["access_token"]
    claims = claims_of(token)
    revoke(client, web_client, token, "access_token")
    assert entries(client) == [{"kind": "jti", "value": claims["jti"], "expires_at": claims["exp"]}]
    revoke(client, web_client, token, "access_token")  # again: nothing new
    assert len(entries(client)) == 1


def test_revoking_a_refresh_token_publishes_its_grant(auth_app, client, flow, user, web_client):
    issued = flow.token(user, web_client)
    grant = claims_of(issued["access_token"])["grant_id"]
    before = int(time.time())
    revoke(client, web_client, issued["refresh_token"], "refresh_token")
    [entry] = entries(client)
    ttl = auth_app.config["ACCESS_TOKEN_TTL"]
    assert entry == {"kind": "grant", "value": grant, "expires_at": entry["expires_at"]}
    assert before + ttl <= entry["expires_at"] <= int(time.time()) + ttl


def test_refresh_token_reuse_publishes_the_grant_once(client, flow, user, web_client):
    issued = flow.token(user, web_client)
    grant = claims_of(issued["access_token"])["grant_id"]
    assert refresh(client, web_client, issued["refresh_token"]).status_code == 200
    for _ in range(3):  # an attacker sending the used token again and again
        assert refresh(client, web_client, issued["refresh_token"]).status_code == 400
    assert [(e["kind"], e["value"]) for e in entries(client)] == [("grant", grant)]


def test_code_replay_publishes_the_grant_it_started(client, flow, user, web_client):
    result = flow.authorize(user, web_client)
    data = {
        "grant_type": "authorization_code",
        "code": result["code"],
        "redirect_uri": web_client.redirect_uris[0],
        "code_verifier": flow.verifier,
    }
    first = client.post("/oauth/token", data=data, headers=web_client.basic())
    assert first.status_code == 200
    replay = client.post("/oauth/token", data=data, headers=web_client.basic())
    assert replay.status_code == 400
    grant = claims_of(first.json["access_token"])["grant_id"]
    assert [(e["kind"], e["value"]) for e in entries(client)] == [("grant", grant)]


def test_disabling_a_user_publishes_a_hash_of_the_subject(auth_app, client, flow, user, web_client):
    from auth_server.accounts import disable_user

    tokens = flow.token(user, web_client)
    grant_id = jwt.decode(tokens["access_token"], options={"verify_signature": False})["grant_id"]
    before = int(time.time())
    with auth_app.app_context():
        disable_user(user.username)
    # The user's grant, revoked under its lock like any other, and the subject as a whole.
    grant, entry = sorted(entries(client), key=lambda e: e["kind"])
    assert (grant["kind"], grant["value"]) == ("grant", grant_id)
    assert entry["kind"] == "sub"
    assert entry["value"] == hashlib.sha256(user.id.encode()).hexdigest()
    # Every token issued up to now, this second included, and none later.
    assert before + 1 <= entry["issued_before"] <= int(time.time()) + 1
    r = client.get("/oauth/revocations")
    assert user.id not in r.get_data(as_text=True)  # the public feed names no user


def test_deleting_a_user_publishes_the_subject(auth_app, client, user):
    from auth_server.accounts import delete_user

    with auth_app.app_context():
        delete_user(user.username)
    assert [(e["kind"], e["value"]) for e in entries(client)] == [
        ("sub", hashlib.sha256(user.id.encode()).hexdigest())
    ]


def test_withdrawn_consent_revokes_the_clients_grants_for_that_user(
    auth_app, client, flow, user, web_client
):
    """Every grant of that user with that client, and nothing else; the refresh tokens
    stop too, and the next authorization asks for consent again."""
    from auth_server.consent import forget_consent, has_consent

    first = flow.token(user, web_client)
    second = flow.token(user, web_client)
    other_app = make_client(auth_app, "Other app")
    other_user = make_user(auth_app, "bob", "bob-password")
    from tests.conftest import Flow

    kept = [
        flow.token(user, other_app),
        Flow(auth_app.test_client()).token(other_user, web_client),
    ]
    with auth_app.app_context():
        forget_consent(user.id, web_client.client_id)
        assert not has_consent(user.id, web_client.client_id, "call")
    grants = sorted(claims_of(t["access_token"])["grant_id"] for t in (first, second))
    assert sorted((e["kind"], e["value"]) for e in entries(client)) == [
        ("grant", g) for g in grants
    ]
    r = refresh(client, web_client, first["refresh_token"])
    assert (r.status_code, r.json["error"]) == (400, "invalid_grant")
    for issued, app_client in zip(kept, (other_app, web_client), strict=True):
        assert refresh(client, app_client, issued["refresh_token"]).status_code == 200


def test_deleting_a_client_publishes_the_client(auth_app, client, web_client):
    from auth_server.clients import delete_client

    before = int(time.time())
    with auth_app.app_context():
        delete_client(web_client.client_id)
    [entry] = entries(client)
    assert (entry["kind"], entry["value"]) == ("client", web_client.client_id)
    assert before + 1 <= entry["issued_before"] <= int(time.time()) + 1


def test_rotating_a_secret_revokes_nothing(auth_app, client, flow, user, web_client):
    """Routine and planned: the tokens already out stay valid (docs/OPERATIONS.md)."""
    from auth_server.clients import rotate_secret

    flow.token(user, web_client)
    with auth_app.app_context():
        rotate_secret(web_client.client_id)
    assert entries(client) == []


def test_the_cursor_pages_through_entries(auth_app, client, flow, user, web_client, monkeypatch):
    """``after`` returns only newer entries; a full page says ``more`` and its last id."""
    from auth_server import revocations

    tokens = [flow.token(user, web_client)["access_token"] for _ in range(5)]
    for token in tokens:
        revoke(client, web_client, token)
    whole = feed(client)
    ids = [e["id"] for e in whole["revocations"]]
    assert ids == sorted(ids) and len(ids) == 5
    assert [e["value"] for e in whole["revocations"]] == [claims_of(t)["jti"] for t in tokens]
    assert (whole["cursor"], whole["more"]) == (ids[-1], False)
    assert feed(client, ids[1])["revocations"] == whole["revocations"][2:]
    assert feed(client, ids[-1]) == {"revocations": [], "cursor": ids[-1], "more": False}
    monkeypatch.setattr(revocations, "FEED_PAGE", 2)
    with auth_app.test_request_context():
        page = revocations.feed(0, limit=2)
    assert [e["id"] for e in page["revocations"]] == ids[:2]
    assert (page["cursor"], page["more"]) == (ids[1], True)


def test_expired_entries_leave_the_feed_and_are_pruned(auth_app, client, monkeypatch):
    """An entry is served until FEED_GRACE after its expiry, then pruned — all but the
    newest, which keeps the cursor where readers expect it."""
    from auth_server import revocations
    from auth_server.models import Revocation

    monkeypatch.setattr(revocations, "_last_pruned", time.monotonic())  # not yet
    now = int(time.time())
    old = now - revocations.FEED_GRACE - 1
    with auth_app.app_context():
        revocations.record("jti", "expired-1", expires_at=old)
        revocations.record("jti", "expired-2", expires_at=old)
        revocations.record("jti", "grace", expires_at=now - 10)
        revocations.record("jti", "expired-newest", expires_at=old)
        auth_app.extensions["sqlalchemy"].session.commit()
    body = feed(client)
    assert [e["value"] for e in body["revocations"]] == ["grace"]
    top = body["cursor"]
    monkeypatch.setattr(revocations, "_last_pruned", float("-inf"))
    with auth_app.app_context():
        assert revocations.prune() == 2
        assert revocations.prune() == 0  # at most once a minute
        db = auth_app.extensions["sqlalchemy"]
        assert sorted(db.session.scalars(db.select(Revocation.value))) == [
            "expired-newest",
            "grace",
        ]
    assert feed(client)["cursor"] == top


def test_metadata_advertises_the_feed(client):
    r = client.get("/.well-known/oauth-authorization-server", headers=JSON)
    assert r.json["revocation_feed_endpoint"] == "http://127.0.0.1:8888/oauth/revocations"
