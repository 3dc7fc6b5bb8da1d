"""Discovery (RFC 8414), the JWKS, /healthz and the original's /test page."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from jwcrypto import jwk

from tests.auth_server.helpers import HTML, JSON, auth_params, basic
from tests.conftest import ISSUER, auth_config

EXPECTED = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/oauth/auth",
    "token_endpoint": f"{ISSUER}/oauth/token",
    "revocation_endpoint": f"{ISSUER}/oauth/revoke",
    "introspection_endpoint": f"{ISSUER}/oauth/introspect",
    "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
    "scopes_supported": ["call", "admin", "introspect", "dialer", "openid", "profile", "email"],
    "response_types_supported": ["code", "token", "id_token", "id_token token"],
    "response_modes_supported": ["query", "fragment"],
    "grant_types_supported": [
        "authorization_code",
        "implicit",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:device_code",
    ],
    "token_endpoint_auth_methods_supported": [
        "client_secret_basic",
        "client_secret_post",
        "none",
        "private_key_jwt",
        "client_secret_jwt",
    ],
    "revocation_endpoint_auth_methods_supported": [
        "client_secret_basic",
        "client_secret_post",
        "none",
        "private_key_jwt",
        "client_secret_jwt",
    ],
    "introspection_endpoint_auth_methods_supported": [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "client_secret_jwt",
    ],
    "code_challenge_methods_supported": ["S256"],
    "revocation_feed_endpoint": f"{ISSUER}/oauth/revocations",
    # OpenID Connect (tests/auth_server/test_oidc.py)
    "userinfo_endpoint": f"{ISSUER}/oauth/userinfo",
    "end_session_endpoint": f"{ISSUER}/oauth/logout",
    "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "claims_supported": [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "at_hash",
        "name",
        "preferred_username",
        "email",
        "email_verified",
    ],
    "claim_types_supported": ["normal"],
    "prompt_values_supported": ["none", "login", "consent", "select_account"],
    "claims_parameter_supported": False,
    "request_parameter_supported": False,
    "request_uri_parameter_supported": False,
    "authorization_response_iss_parameter_supported": True,
    "device_authorization_endpoint": f"{ISSUER}/oauth/device_authorization",
    # dynamic client registration, client assertions (tests/auth_server/test_registration.py)
    "registration_endpoint": f"{ISSUER}/oauth/register",
    **{
        f"{endpoint}_endpoint_auth_signing_alg_values_supported": [
            *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
            *("ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"),
        ]
        for endpoint in ("token", "revocation", "introspection")
    },
    # PAR and DPoP (tests/auth_server/test_par.py, test_dpop.py)
    "pushed_authorization_request_endpoint": f"{ISSUER}/oauth/par",
    "require_pushed_authorization_requests": False,
    "dpop_signing_alg_values_supported": [
        *("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
        "EdDSA",
    ],
}


def _metadata(client) -> dict:
    r = client.get("/.well-known/oauth-authorization-server")
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    return dict(r.json)


def _path(url: str) -> str:
    assert url.startswith(ISSUER + "/"), url
    return url[len(ISSUER) :]


def test_metadata_document(client):
    """The document lists exactly the supported endpoints, grants, response types and methods."""
    assert _metadata(client) == EXPECTED


def test_metadata_is_valid_rfc8414(client):
    """Authlib's RFC 8414 validator accepts the document."""
    AuthorizationServerMetadata(_metadata(client)).validate()


def test_metadata_follows_the_configured_issuer(databases, keys_dir):
    """With an https issuer every endpoint is under it, and the document still validates."""
    from auth_server import create_app

    app = create_app(auth_config(databases, keys_dir, AUTH_ISSUER="https://auth.example.com"))
    try:
        data = app.test_client().get("/.well-known/oauth-authorization-server").json
        assert data["issuer"] == "https://auth.example.com"
        for key, value in data.items():
            if key.endswith(("_endpoint", "_uri")):
                assert value.startswith("https://auth.example.com/"), (key, value)
        AuthorizationServerMetadata(data).validate()
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def test_metadata_endpoints_answer(client, web_client, admin_client):
    """Every URL in the document is served here (none of them is a 404)."""
    data = _metadata(client)
    r = client.get(_path(data["authorization_endpoint"]) + "?" + urlencode(auth_params(web_client)))
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/auth/login?")

    r = client.post(
        _path(data["token_endpoint"]),
        data={"grant_type": "client_credentials"},
        headers=admin_client.basic(),
    )
    assert r.status_code == 200
    token = r.json["access_token"]

    auth = basic(admin_client.client_id, admin_client.client_secret)
    r = client.post(_path(data["introspection_endpoint"]), data={"token": token}, headers=auth)
    assert (r.status_code, r.json["active"]) == (200, True)

    r = client.post(_path(data["revocation_endpoint"]), data={"token": token}, headers=auth)
    assert r.status_code == 200
    r = client.post(_path(data["introspection_endpoint"]), data={"token": token}, headers=auth)
    assert (r.status_code, r.json) == (200, {"active": False})

    r = client.get(_path(data["jwks_uri"]))
    assert r.status_code == 200
    assert r.json["keys"]

    r = client.get(_path(data["revocation_feed_endpoint"]))
    assert r.status_code == 200
    assert set(r.json) == {"revocations", "cursor", "more"}

    # no access token: refused, but served (not a 404)
    r = client.get(_path(data["userinfo_endpoint"]))
    assert (r.status_code, r.json["error"]) == (401, "invalid_request")
    r = client.get(_path(data["end_session_endpoint"]), headers=JSON)
    assert (r.status_code, r.json) == (200, {"status": "signed_out"})

    # the admin client has no device grant: refused, but served (not a 404)
    r = client.post(_path(data["device_authorization_endpoint"]), headers=auth)
    assert (r.status_code, r.json["error"]) == (400, "unauthorized_client")

    # no initial access token: refused, but served (not a 404)
    r = client.post(_path(data["registration_endpoint"]), json={"redirect_uris": []})
    assert (r.status_code, r.json["error"]) == (401, "invalid_token")

    # no authorization request pushed: refused, but served (not a 404)
    r = client.post(_path(data["pushed_authorization_request_endpoint"]), headers=auth)
    assert (r.status_code, r.json["error"]) == (400, "invalid_request")

    for key, value in data.items():
        if isinstance(value, str) and value.startswith(ISSUER + "/"):
            assert key in {
                "pushed_authorization_request_endpoint",
                "authorization_endpoint",
                "token_endpoint",
                "revocation_endpoint",
                "introspection_endpoint",
                "jwks_uri",
                "revocation_feed_endpoint",
                "device_authorization_endpoint",
                "registration_endpoint",
                "userinfo_endpoint",
                "end_session_endpoint",
            }, f"{key} not checked"


def test_discovery_documents_are_cacheable(client):
    """Metadata and JWKS are public documents a client may cache."""
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/jwks.json"):
        r = client.get(path)
        assert r.headers["Cache-Control"] == "public, max-age=300", path


def test_jwks_publishes_rsa_public_keys(client, keys_dir):
    """RSA public keys with kid (the RFC 7638 thumbprint), use=sig, alg=RS256; nothing private."""
    from shared.keys import KeyStore

    r = client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert set(r.json) == {"keys"}
    keys = r.json["keys"]
    assert keys
    for key in keys:
        assert set(key) == {"kty", "n", "e", "kid", "use", "alg"}
        assert (key["kty"], key["use"], key["alg"]) == ("RSA", "sig", "RS256")
        assert jwk.JWK(**key).thumbprint() == key["kid"]
        assert not jwk.JWK(**key).has_private
    current = KeyStore(keys_dir).current()
    assert current is not None
    assert current.kid in [k["kid"] for k in keys]


def test_healthz(client):
    """/healthz checks the database: 200 {"status": "ok", "database": "ok"}."""
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json == {"status": "ok", "database": "ok"}


def test_test_page_json(client):
    """/test returns its query as JSON when JSON is asked for."""
    r = client.get("/test?code=abc123&state=xyz", headers=JSON)
    assert r.status_code == 200
    assert r.json == {"code": "abc123", "state": "xyz"}


def test_test_page_html(client):
    """/test shows an HTML page to a browser, with the query embedded (escaped)."""
    r = client.get("/test?code=abc123&state=%3Cscript%3Ealert(1)%3C/script%3E", headers=HTML)
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert '<pre id="result"' in html
    assert "abc123" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'src="/static/test.js"' in html


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-authorization-server", "/.well-known/jwks.json", "/healthz"]
)
def test_meta_endpoints_need_no_session(client, path):
    """Discovery and health answer anonymous requests without setting a session cookie."""
    r = client.get(path)
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers
