"""Bearer tokens: where they may be sent, which ones are refused (and how), and scopes."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.call_api.helpers import DROP, NUMBER, b64url, count_calls, good_claims, raw_jwt, start
from tests.conftest import AUDIENCE, ISSUER, bearer


def challenge(
    error: str | None = None, description: str | None = None, scope: str | None = None
) -> str:
    parts = ['realm="clickcall"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return "Bearer " + ", ".join(parts)


def assert_invalid_token(r, description: str) -> None:
    assert r.status_code == 401, r.get_data(as_text=True)
    assert r.json == {"error": "invalid_token", "error_description": description}
    assert r.headers["WWW-Authenticate"] == challenge("invalid_token", description)
    assert r.headers["Cache-Control"] == "no-store"


# --- where the token may be --------------------------------------------------------------


def test_token_in_authorization_header(api, user_token, user):
    """RFC 6750 §2.1: Authorization: Bearer."""
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    assert r.status_code == 201
    assert r.json["subject"] == user.id


def test_token_in_original_authentication_header(api, user_token, user):
    """The 2012 original's `Authentication: Bearer` header still works, scheme case-insensitive."""
    r = api.post(
        "/rest/call", data={"number": NUMBER}, headers={"Authentication": f"Bearer {user_token}"}
    )
    assert r.status_code == 201
    assert r.json["subject"] == user.id
    r = api.get("/rest/call", headers={"Authorization": f"bearer {user_token}"})
    assert r.status_code == 200


def test_token_in_query(api, user_token, user):
    """RFC 6750 §2.3: ?access_token= (for GET and POST)."""
    r = api.post("/rest/call", query_string={"access_token": user_token}, data={"number": NUMBER})
    assert r.status_code == 201
    r = api.get("/rest/call", query_string={"access_token": user_token})
    assert r.status_code == 200
    assert [c["subject"] for c in r.json["calls"]] == [user.id]


def test_token_in_form_body(api, user_token, user):
    """RFC 6750 §2.2: access_token in a form-encoded body, beside the other parameters."""
    r = api.post("/rest/call", data={"number": NUMBER, "access_token": user_token})
    assert r.status_code == 201
    token_call = r.json["token_call"]
    r = api.put("/rest/call", data={"token_call": token_call, "access_token": user_token})
    assert r.status_code == 200
    assert r.json["end_reason"] == "hangup"


def test_form_token_is_ignored_in_json_bodies(api, call_app, user_token):
    """Only form bodies may carry the token: a JSON access_token member is not a token."""
    r = api.post("/rest/call", json={"number": NUMBER, "access_token": user_token})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == challenge()
    assert count_calls(call_app) == 0


@pytest.mark.parametrize(
    "where",
    ["authorization+authentication", "header+query", "header+form", "query+form"],
)
def test_token_in_two_places_is_400(api, call_app, user_token, where):
    """RFC 6750 §2: more than one method is a 400 invalid_request, whatever the combination."""
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    data = {"number": NUMBER}
    if "authorization" in where or "header" in where:
        headers["Authorization"] = f"Bearer {user_token}"
    if "authentication" in where:
        headers["Authentication"] = f"Bearer {user_token}"
    if "query" in where:
        query["access_token"] = user_token
    if "form" in where:
        data["access_token"] = user_token
    r = api.post("/rest/call", headers=headers, query_string=query, data=data)
    description = "Send the access token in exactly one place."
    assert r.status_code == 400
    assert r.json == {"error": "invalid_request", "error_description": description}
    assert r.headers["WWW-Authenticate"] == challenge("invalid_request", description)
    assert count_calls(call_app) == 0


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/rest/call"),
        ("post", "/rest/call"),
        ("put", "/rest/call"),
        ("get", "/admin/users/someone"),
        ("post", "/admin/calls/abc/end"),
        ("post", "/dialer/poll"),
        ("post", "/dialer/calls/abc/events"),
    ],
)
def test_missing_token_is_401_with_bare_challenge(api, method, path):
    """No token at all: 401 with `WWW-Authenticate: Bearer realm="clickcall"` (no error code in
    the challenge, RFC 6750 §3.1) and no-store."""
    r = getattr(api, method)(path)
    assert r.status_code == 401
    assert r.json == {
        "error": "invalid_request",
        "error_description": "An access token is required.",
    }
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="clickcall"'
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("header", ["Authorization", "Authentication"])
@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc"])
def test_malformed_authorization_header(api, header, value):
    """A header that is not `Bearer <token>` is a 401 invalid_token naming the header."""
    r = api.get("/rest/call", headers={header: value})
    assert_invalid_token(r, f"The {header} header must be 'Bearer <token>'.")


# --- refused tokens ----------------------------------------------------------------------


def _other_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _hs256_with_public_pem(signing_key) -> str:
    from shared.keys import public_pem

    header = {"alg": "HS256", "typ": "at+jwt", "kid": signing_key.kid}
    signing_input = (
        b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(good_claims()).encode())
    )
    mac = hmac.new(public_pem(signing_key.private_key), signing_input.encode(), hashlib.sha256)
    return signing_input + "." + b64url(mac.digest())


def _forged(case: str, forge, signing_key) -> tuple[str, str]:
    """(token, expected error_description) for one way of getting a token wrong."""
    now = int(time.time())
    signature = "The access token signature or claims are invalid."
    cases = {
        "other-key-same-kid": (lambda: forge(key=_other_key()), signature),
        "other-key-other-kid": (
            lambda: forge(key=_other_key(), headers={"kid": "some-other-key"}),
            "The access token is signed by an unknown key.",
        ),
        "expired": (lambda: forge(iat=now - 7200, exp=now - 60), "The access token has expired."),
        "nbf-future": (lambda: forge(nbf=now + 600), "The access token is not valid yet."),
        "iat-future": (
            lambda: forge(iat=now + 600, exp=now + 4200),
            "The access token is not valid yet.",
        ),
        "wrong-aud": (
            lambda: forge(aud="http://127.0.0.1:9999"),
            "The access token is for another audience.",
        ),
        "no-aud": (lambda: forge(aud=DROP), "The access token lacks the 'aud' claim."),
        "wrong-iss": (
            lambda: forge(iss="https://evil.example"),
            "The access token is from another issuer.",
        ),
        "no-iss": (lambda: forge(iss=DROP), "The access token lacks the 'iss' claim."),
        "no-exp": (lambda: forge(exp=DROP), "The access token lacks the 'exp' claim."),
        "no-iat": (lambda: forge(iat=DROP), "The access token lacks the 'iat' claim."),
        "alg-none": (
            lambda: raw_jwt(
                {"alg": "none", "typ": "at+jwt", "kid": signing_key.kid}, good_claims()
            ),
            "The access token is signed with an algorithm that is not accepted.",
        ),
        "alg-none-with-signature": (
            lambda: _swap_header(forge(), {"alg": "none", "typ": "at+jwt", "kid": signing_key.kid}),
            "The access token is signed with an algorithm that is not accepted.",
        ),
        "hs256-public-pem": (
            lambda: _hs256_with_public_pem(signing_key),
            "The access token is signed with an algorithm that is not accepted.",
        ),
        "no-kid": (lambda: forge(headers={"kid": DROP}), "The access token has no key id (kid)."),
        "empty-kid": (lambda: forge(headers={"kid": ""}), "The access token has no key id (kid)."),
        "no-typ": (
            lambda: forge(headers={"typ": DROP}),
            "The token is not an access token (typ must be at+jwt).",
        ),
        "typ-jwt": (
            lambda: forge(headers={"typ": "JWT"}),
            "The token is not an access token (typ must be at+jwt).",
        ),
        "garbage": (lambda: "not-a-jwt-at-all", "The access token is not a JWT."),
        "three-garbage-parts": (lambda: "abc.def.ghi", "The access token is not a JWT."),
        "no-sub": (lambda: forge(sub=DROP), "The access token lacks the 'sub' claim."),
        "empty-sub": (lambda: forge(sub=""), "The access token has an unusable subject."),
        "numeric-sub": (lambda: forge(sub=12345), signature),
        "no-client-id": (
            lambda: forge(client_id=DROP),
            "The access token lacks the 'client_id' claim.",
        ),
        "numeric-client-id": (
            lambda: forge(client_id=7),
            "The access token has an unusable client_id.",
        ),
        "tampered-payload": (lambda: _tamper(forge()), signature),
        "too-long": (lambda: forge(pad="x" * 9000), "The access token is too long."),
    }
    make, description = cases[case]
    return make(), description


def _swap_header(token: str, header: dict) -> str:
    """The same payload and RS256 signature under another header."""
    _head, payload, sig = token.split(".")
    return ".".join([b64url(json.dumps(header).encode()), payload, sig])


def _tamper(token: str) -> str:
    head, _payload, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["scope"] = "call admin"
    return ".".join([head, b64url(json.dumps(claims).encode()), sig])


FORGERIES = [
    "other-key-same-kid",
    "other-key-other-kid",
    "expired",
    "nbf-future",
    "iat-future",
    "wrong-aud",
    "no-aud",
    "wrong-iss",
    "no-iss",
    "no-exp",
    "no-iat",
    "alg-none",
    "alg-none-with-signature",
    "hs256-public-pem",
    "no-kid",
    "empty-kid",
    "no-typ",
    "typ-jwt",
    "garbage",
    "three-garbage-parts",
    "no-sub",
    "empty-sub",
    "numeric-sub",
    "no-client-id",
    "numeric-client-id",
    "tampered-payload",
    "too-long",
]


def test_forged_baseline_is_accepted(api, forge, signing_key):
    """The forging helper's untouched token (real key, every claim right) is accepted, so each
    refusal below is caused by its one change alone; so is typ application/at+jwt."""
    claims = good_claims()
    r = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(forge(claims=claims)))
    assert r.status_code == 201, r.get_data(as_text=True)
    assert (r.json["subject"], r.json["client_id"]) == (claims["sub"], claims["client_id"])
    token = forge(headers={"typ": "application/at+jwt"})
    assert api.get("/rest/call", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("case", FORGERIES)
def test_forged_token_is_401_invalid_token(api, call_app, forge, signing_key, case):
    """Each broken or forged token is refused: 401 invalid_token with the reason in the body
    and in the WWW-Authenticate challenge, and no call is started."""
    token, description = _forged(case, forge, signing_key)
    for r in (
        api.post("/rest/call", data={"number": NUMBER}, headers=bearer(token)),
        api.get("/rest/call", headers=bearer(token)),
        api.get("/rest/call", query_string={"access_token": token}),
    ):
        assert_invalid_token(r, description)
    assert count_calls(call_app) == 0


def test_expiry_leeway_is_30_seconds(api, forge):
    """A token expired 10 s ago is still accepted (clock skew), one 60 s ago is not."""
    now = int(time.time())
    assert (
        api.get("/rest/call", headers=bearer(forge(iat=now - 3600, exp=now - 10))).status_code
        == 200
    )
    r = api.get("/rest/call", headers=bearer(forge(iat=now - 3600, exp=now - 60)))
    assert_invalid_token(r, "The access token has expired.")
    assert api.get("/rest/call", headers=bearer(forge(nbf=now + 10))).status_code == 200


def test_ec_token_refused_when_only_rs256_is_accepted(api, signing_key):
    """An ES256 token (valid shape, own key, our kid) is refused: only RS256 is configured."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        good_claims(), key, algorithm="ES256", headers={"typ": "at+jwt", "kid": signing_key.kid}
    )
    r = api.get("/rest/call", headers=bearer(token))
    assert_invalid_token(r, "The access token is signed with an algorithm that is not accepted.")


def test_claims_are_checked_against_configured_issuer_and_audience(api, forge):
    """The real issuer and audience values are what the forging baseline uses."""
    claims = jwt.decode(forge(), options={"verify_signature": False})
    assert (claims["iss"], claims["aud"]) == (ISSUER, AUDIENCE)


# --- scope -------------------------------------------------------------------------------


def test_user_token_on_admin_is_403(api, user_token, user):
    """A `call`-scoped user token cannot use the admin interface."""
    description = "This endpoint needs the 'admin' scope."
    for r in (
        api.get(f"/admin/users/{user.id}", headers=bearer(user_token)),
        api.put(
            f"/admin/users/{user.id}/limit", json={"max_ongoing": 99}, headers=bearer(user_token)
        ),
    ):
        assert r.status_code == 403
        assert r.json == {"error": "insufficient_scope", "error_description": description}
        assert r.headers["WWW-Authenticate"] == challenge(
            "insufficient_scope", description, "admin"
        )
        assert r.headers["Cache-Control"] == "no-store"
    # The refused PUT changed nothing: the default limit still applies.
    start(api, user_token)
    start(api, user_token)
    assert (
        api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token)).status_code
        == 409
    )


def test_admin_token_on_rest_is_403(api, call_app, admin_token):
    """An `admin`-scoped client token cannot start or list calls."""
    description = "This endpoint needs the 'call' scope."
    for r in (
        api.post("/rest/call", data={"number": NUMBER}, headers=bearer(admin_token)),
        api.get("/rest/call", headers=bearer(admin_token)),
    ):
        assert r.status_code == 403
        assert r.json == {"error": "insufficient_scope", "error_description": description}
        assert r.headers["WWW-Authenticate"] == challenge("insufficient_scope", description, "call")
    assert count_calls(call_app) == 0


def test_scope_must_be_a_whole_word(api, forge):
    """Scope `caller` or `admin` does not grant `call`; `openid call` does."""
    for scope in ("caller", "admin", "", "CALL"):
        r = api.get("/rest/call", headers=bearer(forge(scope=scope)))
        assert r.status_code == 403, scope
    assert api.get("/rest/call", headers=bearer(forge(scope="openid call"))).status_code == 200


# --- settings and headers ----------------------------------------------------------------


def test_query_token_can_be_disabled(make_call_app, user_token):
    """With CALL_ALLOW_QUERY_TOKEN=False a query token is refused (401); headers still work."""
    strict = make_call_app(CALL_ALLOW_QUERY_TOKEN=False).test_client()
    r = strict.get("/rest/call", query_string={"access_token": user_token})
    assert_invalid_token(r, "Tokens in the query string are disabled; use the header.")
    r = strict.post(
        "/rest/call", query_string={"access_token": user_token}, data={"number": NUMBER}
    )
    assert_invalid_token(r, "Tokens in the query string are disabled; use the header.")
    assert strict.get("/rest/call", headers=bearer(user_token)).status_code == 200


def test_rest_responses_are_not_cacheable(api, user_token):
    """Every /rest/call response (success or error) carries Cache-Control: no-store."""
    created = api.post("/rest/call", data={"number": NUMBER}, headers=bearer(user_token))
    responses = [
        created,
        api.get("/rest/call", headers=bearer(user_token)),
        api.get(
            "/rest/call",
            query_string={"token_call": created.json["token_call"], "access_token": user_token},
        ),
        api.put(
            "/rest/call",
            data={"token_call": created.json["token_call"]},
            headers=bearer(user_token),
        ),
        api.get("/rest/call?token_call=unknown", headers=bearer(user_token)),
        api.post("/rest/call", data={"number": "abc"}, headers=bearer(user_token)),
        api.get("/rest/call"),
    ]
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 404, 400, 401]
    for r in responses:
        assert r.headers["Cache-Control"] == "no-store"


def test_fast_segment_decoder_agrees_with_pyjwt():
    """call_api.auth's JWS segment check (a regular expression, for speed) accepts and
    refuses exactly what PyJWT's own does, with the same decoded bytes."""
    from jwt.api_jws import PyJWS

    from call_api.auth import _JWS

    segments = [b"", b"e30", b"e30=", b"e30==", b"e30===", b"eyJ", b"eyJh", b"eyJhbA", b"eyJhbA=",
                b"eyJhbA==", b"eyJhbB", b"eyJhbQ", b"a", b"ab", b"abc", b"abcd", b"ab==", b"ab=",
                b"abc=", b"abc==", b"a===", b"!!!!", b"ab+/", b"ab_-", b"ab c", b"ab\n", b"=",
                b"==", b"abcd=", b"abcde", b"ab\xc3\xa9", b"eyJhbGciOiJSUzI1NiJ9"]  # fmt: skip

    def outcome(decode, segment):
        try:
            return decode(segment, "header")
        except jwt.DecodeError as exc:
            return str(exc)

    for segment in segments:
        assert outcome(_JWS._decode_base64url_segment, segment) == outcome(
            PyJWS._decode_base64url_segment, segment
        ), segment
