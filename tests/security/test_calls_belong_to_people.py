"""Calls belong to people: no token without a user ever places, ends or reads calls.

Attack: a ``client_credentials`` token has no user, yet the auth server issued one with scope
``call`` to a client registered for it, and ``POST /rest/call`` accepted it and filed the
call under the client's id. Now both lines hold: the auth server never issues ``call``
without a user (``invalid_scope``, asked for or defaulted from the registration), and the
call API refuses a token that was issued to a client alone on ``/rest/call`` (403
``insufficient_scope``, saying why), even one signed with the real key.
"""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from sqlalchemy import func, select

from tests.auth_server.helpers import token_request
from tests.call_api.helpers import NUMBER, count_calls
from tests.conftest import AUDIENCE, ISSUER, bearer, make_client

NO_USER = (
    "The '{scope}' scope acts for a person, and this token was issued to a client alone "
    "(client_credentials), for no user; calls belong to people."
)


def invalid_scope(description: str) -> dict[str, str]:
    return {"error": "invalid_scope", "error_description": description}


def count_tokens(auth_app) -> int:
    from auth_server.models import Token

    with auth_app.app_context():
        db = auth_app.extensions["sqlalchemy"]
        return int(db.session.scalar(select(func.count()).select_from(Token)) or 0)


@pytest.fixture
def robot(auth_app):
    """A machine client registered, as the CLI allows, for client_credentials with call."""
    return make_client(
        auth_app,
        "Robot",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="call admin",
    )


def test_client_credentials_never_carry_call(client, auth_app, robot):
    cc = {"grant_type": "client_credentials"}
    r = token_request(client, robot, {**cc, "scope": "call"})
    assert (r.status_code, r.json) == (
        400,
        invalid_scope(
            "The scope 'call' acts for a person, and a client_credentials token has no user: "
            "ask for admin."
        ),
    )
    r = token_request(client, robot, {**cc, "scope": "admin call"})
    assert r.status_code == 400 and r.json["error"] == "invalid_scope"
    # Asking for nothing would have meant the registered "call admin".
    r = token_request(client, robot, cc)
    assert (r.status_code, r.json) == (
        400,
        invalid_scope(
            "The scope 'call' acts for a person, and a client_credentials token has no user; "
            "this client asked for no scope and is registered for 'call': ask for admin."
        ),
    )
    assert count_tokens(auth_app) == 0
    r = token_request(client, robot, {**cc, "scope": "admin"})
    assert r.status_code == 200 and r.json["scope"] == "admin"


def test_registering_a_client_credentials_client_for_call_alone_is_refused(auth_app):
    """Such a client could never get a token: refused when it is registered, saying why."""
    from auth_server.clients import create_client
    from shared.errors import InvalidRequest

    with auth_app.app_context(), pytest.raises(InvalidRequest) as refused:
        create_client("Caller robot", [], grant_types=("client_credentials",), scope="call")
    assert refused.value.description == (
        "A client_credentials client acts for no person, so it cannot get call; register it "
        "with --scope admin (or introspect)."
    )


def test_client_registered_for_call_alone_gets_no_client_credentials_token(client, auth_app):
    """A client registered for ``call`` alone before this was refused (written straight into
    the database, as an upgraded one holds it) gets no token."""
    from auth_server.extensions import db
    from auth_server.models import Client

    only_call = make_client(
        auth_app,
        "Caller robot",
        redirect_uris=[],
        grant_types=("client_credentials",),
        response_types=(),
        scope="admin",
    )
    with auth_app.app_context():
        row = db.session.scalar(select(Client).where(Client.client_id == only_call.client_id))
        row.set_client_metadata({**row.client_metadata, "scope": "call"})
        db.session.commit()
    r = token_request(client, only_call, {"grant_type": "client_credentials"})
    assert (r.status_code, r.json) == (
        400,
        invalid_scope(
            "The scope 'call' acts for a person, and a client_credentials token has no user; "
            "this client asked for no scope and is registered for 'call': get it through "
            "authorization_code, where a person signs in."
        ),
    )
    assert count_tokens(auth_app) == 0


def client_token(keys_dir, client_id: str, scope: str = "call", **extra: str) -> str:
    """What the auth server issued for client_credentials before: the client is the subject,
    there is no username. Signed with the real key."""
    from shared.keys import KeyStore

    key = KeyStore(keys_dir).current()
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": client_id,
        "aud": AUDIENCE,
        "client_id": client_id,
        "scope": scope,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        **extra,
    }
    return jwt.encode(
        claims, key.private_key, algorithm=key.algorithm, headers={"typ": "at+jwt", "kid": key.kid}
    )


def test_call_api_refuses_a_client_token_on_the_call_endpoints(api, call_app, keys_dir, user_token):
    robot_id = "robot-" + uuid.uuid4().hex[:8]
    expected = {"error": "insufficient_scope", "error_description": NO_USER.format(scope="call")}
    challenge = (
        f'Bearer realm="clickcall", error="insufficient_scope", '
        f'error_description="{expected["error_description"]}", scope="call"'
    )
    for token in (
        client_token(keys_dir, robot_id),
        client_token(keys_dir, robot_id, scope="call admin"),
        # A username alone does not make a person of the client.
        client_token(keys_dir, robot_id, username="robot"),
    ):
        for r in (
            api.post("/rest/call", data={"number": NUMBER}, headers=bearer(token)),
            api.put("/rest/call", data={"token_call": "x" * 32}, headers=bearer(token)),
            api.get("/rest/call", headers=bearer(token)),
            api.get("/rest/call?token_call=" + "x" * 32, headers=bearer(token)),
        ):
            assert (r.status_code, r.json) == (403, expected)
            assert r.headers["WWW-Authenticate"] == challenge
    assert count_calls(call_app) == 0
    # A person's token still places calls.
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert r.status_code == 201, r.get_data(as_text=True)
