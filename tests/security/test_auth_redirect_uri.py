"""Open redirect and redirect-URI manipulation against the authorization server.

Every attack here is tried in the worst case for the server: the user is already signed in
and has already consented, so a request the server accepted would send the browser (and a
fresh authorization code) straight to the ``redirect_uri``. The only acceptable answer to
a tampered ``redirect_uri`` is an error page on the server itself: 400, ``invalid_request``
(JSON when asked for), and no ``Location`` header at all (RFC 6749 §3.1.2.4, §4.1.2.1;
RFC 9700 §4.1).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest

from shared.errors import InvalidRequest
from tests.conftest import TEST_REDIRECT, Flow, make_client, pkce_pair, query_of

APP_CB = "https://app.example.com/cb"

# Variants of https://app.example.com/cb an attacker could try.
APP_CB_ATTACKS = {
    "suffix_path": "https://app.example.com/cb/evil",
    "suffix_chars": "https://app.example.com/cbx",
    "trailing_slash": "https://app.example.com/cb/",
    "path_traversal": "https://app.example.com/cb/../evil",
    "encoded_traversal": "https://app.example.com/cb/%2e%2e/evil",
    "userinfo_attacker_host": "https://app.example.com@evil.com/cb",
    "userinfo_registered_host": "https://evil.com@app.example.com/cb",
    "host_suffix": "https://app.example.com.evil.com/cb",
    "upper_case": "HTTPS://APP.EXAMPLE.COM/cb",
    "upper_case_path": "https://app.example.com/CB",
    "added_fragment": "https://app.example.com/cb#evil",
    "added_query": "https://app.example.com/cb?next=https://evil.com",
    "different_port": "https://app.example.com:8443/cb",
    "explicit_default_port": "https://app.example.com:443/cb",
    "different_scheme": "http://app.example.com/cb",
    "scheme_relative": "//evil.com/cb",
    "javascript": "javascript:alert(document.domain)//https://app.example.com/cb",
    "backslash": "https://app.example.com\\@evil.com/cb",
}

# Variants of the demo-style http://127.0.0.1:8888/test (a confidential client).
DEMO_ATTACKS = {
    "suffix_path": "http://127.0.0.1:8888/test/evil",
    "suffix_chars": "http://127.0.0.1:8888/testx",
    "path_traversal": "http://127.0.0.1:8888/test/../evil",
    "userinfo_attacker_host": "http://127.0.0.1:8888@evil.com/test",
    "userinfo_registered_host": "http://evil.com@127.0.0.1:8888/test",
    "upper_case": "HTTP://127.0.0.1:8888/TEST",
    "added_fragment": "http://127.0.0.1:8888/test#evil",
    "added_query": "http://127.0.0.1:8888/test?next=http://evil.com",
    "different_port": "http://127.0.0.1:9999/test",
    "no_port": "http://127.0.0.1/test",
    "different_scheme": "https://127.0.0.1:8888/test",
    "other_loopback_name": "http://localhost:8888/test",
}


def auth_params(client_id: str, redirect_uri: str, state: str = "xyz") -> dict[str, str]:
    _, challenge = pkce_pair()
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "call",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }


def assert_error_page(r, error: str = "invalid_request") -> None:
    """A 400 shown by the server itself: no redirect anywhere."""
    assert r.status_code == 400, (r.status_code, r.headers.get("Location"), r.get_data())
    assert "Location" not in r.headers
    if r.mimetype == "application/json":
        assert r.json["error"] == error
    else:
        body = r.get_data(as_text=True)
        assert error in body
        assert 'http-equiv="refresh"' not in body.lower()


@pytest.fixture
def signed_in(client, flow: Flow, user):
    """Sign ``user`` in and grant ``app_client`` consent, so that a valid request would
    redirect straight on without showing any page."""

    def _run(c) -> None:
        result = flow.authorize(user, c)
        assert "code" in result

    return _run


@pytest.fixture
def app_client(auth_app):
    return make_client(auth_app, "App", redirect_uris=[APP_CB])


@pytest.fixture
def demo_client(auth_app):
    return make_client(auth_app, "Demo", redirect_uris=[TEST_REDIRECT])


@pytest.fixture
def native_client(auth_app):
    return make_client(auth_app, "Native", redirect_uris=[TEST_REDIRECT], public=True)


@pytest.mark.parametrize("attack", list(APP_CB_ATTACKS), ids=list(APP_CB_ATTACKS))
def test_open_redirect_via_redirect_uri_variant_is_refused(client, app_client, signed_in, attack):
    signed_in(app_client)
    params = auth_params(app_client.client_id, APP_CB_ATTACKS[attack])
    r = client.get("/oauth/auth?" + urlencode(params), headers={"Accept": "application/json"})
    assert_error_page(r)
    # The same request from a browser gets the HTML error page, still without a redirect.
    r = client.get("/oauth/auth?" + urlencode(params))
    assert_error_page(r)
    assert r.mimetype == "text/html"


@pytest.mark.parametrize("attack", list(DEMO_ATTACKS), ids=list(DEMO_ATTACKS))
def test_open_redirect_via_demo_redirect_uri_variant_is_refused(
    client, demo_client, signed_in, attack
):
    signed_in(demo_client)
    params = auth_params(demo_client.client_id, DEMO_ATTACKS[attack])
    r = client.get("/oauth/auth?" + urlencode(params), headers={"Accept": "application/json"})
    assert_error_page(r)


def test_open_redirect_via_unregistered_uri_with_unknown_client_is_refused(client):
    params = auth_params("no-such-client", "https://evil.com/cb")
    r = client.get("/oauth/auth?" + urlencode(params), headers={"Accept": "application/json"})
    assert_error_page(r, "invalid_client")


def test_open_redirect_on_error_path_is_refused(client, app_client, signed_in):
    """A request that is invalid for another reason (bad scope) must not be reported to an
    unregistered redirect_uri either: the redirect URI is checked first."""
    signed_in(app_client)
    params = {**auth_params(app_client.client_id, "https://evil.com/cb"), "scope": "nope"}
    r = client.get("/oauth/auth?" + urlencode(params), headers={"Accept": "application/json"})
    assert_error_page(r)
    params = {**auth_params(app_client.client_id, "https://evil.com/cb"), "response_type": "token"}
    r = client.get("/oauth/auth?" + urlencode(params), headers={"Accept": "application/json"})
    assert_error_page(r)


def test_open_redirect_via_consent_form_post_is_refused(client, flow, user, app_client):
    """The consent form re-submits the OAuth parameters: a forged POST with another
    redirect_uri (and a valid CSRF token) gets no code."""
    flow.login(user)
    data = {
        **auth_params(app_client.client_id, "https://evil.com/cb"),
        "grant": "true",
        "csrf_token": flow.csrf(),
    }
    r = client.post("/auth/grant", data=data, headers={"Accept": "application/json"})
    assert_error_page(r)
    data["grant"] = "false"  # not even the access_denied error goes to the attacker
    r = client.post("/auth/grant", data=data, headers={"Accept": "application/json"})
    assert_error_page(r)


def test_open_redirect_via_login_form_post_is_refused(client, flow, user, app_client):
    data = {
        **auth_params(app_client.client_id, "https://app.example.com/cb/evil"),
        "username": user.username,
        "password": user.password,
        "csrf_token": flow.csrf(),
    }
    r = client.post("/auth/login", data=data, headers={"Accept": "application/json"})
    assert_error_page(r)


def test_valid_redirect_goes_only_to_the_registered_uri(client, app_client, signed_in):
    """Control: the exact registered URI is accepted and the Location is that URI."""
    signed_in(app_client)
    r = client.get("/oauth/auth?" + urlencode(auth_params(app_client.client_id, APP_CB)))
    assert r.status_code == 302
    loc = r.headers["Location"]
    parts = urlsplit(loc)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == APP_CB
    assert set(query_of(loc)) == {"code", "state", "iss"}


# --- registration -------------------------------------------------------------------------

REGISTRATION_ATTACKS = {
    "fragment": "https://app.example.com/cb#frag",
    "empty_fragment": "https://app.example.com/cb#",
    "userinfo": "https://user:pw@app.example.com/cb",
    "userinfo_host_confusion": "https://app.example.com@evil.com/cb",
    "wildcard_host": "https://*.example.com/cb",
    "wildcard_path": "https://app.example.com/*",
    "javascript": "javascript:alert(1)",
    "javascript_mixed_case": "JaVaScRiPt:alert(1)",
    "data": "data:text/html,<script>alert(1)</script>",
    "relative": "/cb",
    "no_host": "https:///cb",
}


@pytest.mark.parametrize("uri", list(REGISTRATION_ATTACKS.values()), ids=list(REGISTRATION_ATTACKS))
def test_registration_of_dangerous_redirect_uri_is_refused(auth_app, uri):
    from auth_server.clients import create_client

    with auth_app.app_context():
        with pytest.raises(InvalidRequest):
            create_client(name="Evil", redirect_uris=[uri])
        with pytest.raises(InvalidRequest):
            create_client(name="Evil", redirect_uris=[uri], production=True)


@pytest.mark.parametrize(
    "uri", ["http://app.example.com/cb", "http://127.0.0.1.evil.com/cb", "http://10.0.0.1/cb"]
)
def test_registration_of_plain_http_redirect_uri_is_refused_in_production(auth_app, uri):
    from auth_server.clients import create_client

    with auth_app.app_context():
        with pytest.raises(InvalidRequest, match="http://"):
            create_client(name="Plain", redirect_uris=[uri], production=True)


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:8888/test",
        "http://localhost/cb",
        "http://[::1]:9000/cb",
        "https://app.example.com/cb",
        "com.example.app:/oauth2redirect",
    ],
)
def test_registration_allows_loopback_http_and_https_in_production(auth_app, uri):
    from auth_server.clients import create_client

    with auth_app.app_context():
        reg = create_client(name="Fine", redirect_uris=[uri], production=True)
        assert reg.client.redirect_uris == [uri]


# --- native apps on loopback (RFC 8252 §7.3) ------------------------------------------------


def test_native_loopback_client_may_vary_the_port(client, native_client, signed_in):
    signed_in(native_client)
    verifier, challenge = pkce_pair()
    uri = "http://127.0.0.1:51234/test"
    params = {**auth_params(native_client.client_id, uri), "code_challenge": challenge}
    r = client.get("/oauth/auth?" + urlencode(params))
    assert r.status_code == 302
    loc = r.headers["Location"]
    assert loc.startswith(uri + "?")
    code = query_of(loc)["code"]
    r = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": uri,
            "client_id": native_client.client_id,
            "code_verifier": verifier,
        },
    )
    assert r.status_code == 200, r.json
    assert r.json["token_type"] == "Bearer"


NATIVE_ATTACKS = {
    "other_path": "http://127.0.0.1:51234/evil",
    "longer_path": "http://127.0.0.1:51234/test/evil",
    "other_loopback_name": "http://localhost:51234/test",
    "other_loopback_ip": "http://127.0.0.2:51234/test",
    "ipv6_loopback": "http://[::1]:51234/test",
    "remote_host": "http://evil.com:51234/test",
    "userinfo_attacker_host": "http://127.0.0.1:51234@evil.com/test",
    "userinfo_registered_host": "http://evil.com@127.0.0.1:51234/test",
    "https_scheme": "https://127.0.0.1:51234/test",
    "added_query": "http://127.0.0.1:51234/test?x=1",
    "added_fragment": "http://127.0.0.1:51234/test#x",
    "port_out_of_range": "http://127.0.0.1:99999/test",
    "port_not_a_number": "http://127.0.0.1:80ab/test",
    "empty_port": "http://127.0.0.1:/test",
}


@pytest.mark.parametrize("attack", list(NATIVE_ATTACKS), ids=list(NATIVE_ATTACKS))
def test_native_loopback_client_may_not_vary_host_or_path(client, native_client, signed_in, attack):
    signed_in(native_client)
    params = auth_params(native_client.client_id, NATIVE_ATTACKS[attack])
    r = client.get("/oauth/auth?" + urlencode(params), headers={"Accept": "application/json"})
    assert_error_page(r)


def test_confidential_loopback_client_may_not_vary_the_port(client, demo_client, signed_in):
    signed_in(demo_client)
    params = auth_params(demo_client.client_id, "http://127.0.0.1:51234/test")
    r = client.get("/oauth/auth?" + urlencode(params), headers={"Accept": "application/json"})
    assert_error_page(r)


def test_public_non_loopback_client_may_not_vary_the_port(client, auth_app, signed_in):
    spa = make_client(auth_app, "SPA", redirect_uris=[APP_CB], public=True)
    signed_in(spa)
    for uri in ("https://app.example.com:8443/cb", "http://app.example.com:80/cb"):
        params = auth_params(spa.client_id, uri)
        r = client.get("/oauth/auth?" + urlencode(params), headers={"Accept": "application/json"})
        assert_error_page(r)
