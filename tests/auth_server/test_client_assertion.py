"""private_key_jwt and client_secret_jwt (RFC 7523 section 2.2, OpenID Connect Core section 9)
at the token, introspection and revocation endpoints; clients made by the CLI and by
dynamic registration; keys from jwks and from a jwks_uri (fetched, cached, refetched)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc.jwk import RSAKey

from tests.auth_server.jwt_clients import (
    TOKEN_URL,
    assertion,
    ec_key,
    hs256,
    mint,
    public_jwks,
    register,
    with_assertion,
)
from tests.conftest import ISSUER

CC = {"grant_type": "client_credentials", "scope": "admin"}


def _cli_client(cli, tmp_path, method: str, key: Any = None) -> dict[str, str]:
    args = [
        "clients",
        "create",
        "--name",
        "Machine",
        "--grant-type",
        "client_credentials",
        "--scope",
        "admin",
        "--auth-method",
        method,
        "--json",
    ]
    if key is not None:
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(public_jwks(key)))
        args += ["--jwks-file", str(path)]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    return dict(json.loads(r.output))


def test_private_key_jwt_client_from_the_cli(cli, client, tmp_path) -> None:
    key = ec_key()
    made = _cli_client(cli, tmp_path, "private_key_jwt", key)
    assert set(made) == {"client_id"}  # no secret
    cid = made["client_id"]
    shown = json.loads(cli("clients", "show", cid).output)
    assert shown["token_endpoint_auth_method"] == "private_key_jwt"

    for aud in (ISSUER, TOKEN_URL, [TOKEN_URL, "https://other.example"]):
        r = client.post("/oauth/token", data=with_assertion(CC, assertion(cid, key, aud=aud)))
        assert r.status_code == 200, r.json
    access = r.json["access_token"]
    r = client.post(
        "/oauth/introspect",
        data=with_assertion(
            {"token": access}, assertion(cid, key, aud=f"{ISSUER}/oauth/introspect")
        ),
    )
    assert r.status_code == 200 and r.json["active"] is True
    r = client.post("/oauth/revoke", data=with_assertion({"token": access}, assertion(cid, key)))
    assert r.status_code == 200
    # The form client_id may name the client too (RFC 7521 section 4.2).
    r = client.post(
        "/oauth/token", data=with_assertion({**CC, "client_id": cid}, assertion(cid, key))
    )
    assert r.status_code == 200

    # Another method than the registered one is refused, saying which to use.
    r = client.post("/oauth/token", data={**CC, "client_id": cid, "client_secret": "x"})
    assert r.status_code == 401
    assert r.json["error_description"] == (
        "This client is registered for private_key_jwt: authenticate with a signed JWT in "
        "client_assertion (client_assertion_type "
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer), not a client_secret."
    )
    r = cli("clients", "rotate-secret", cid)
    assert r.exit_code != 0
    assert "A private_key_jwt client authenticates with its keys: it has no secret." in r.output
    r = cli(
        "clients",
        "create",
        "--name",
        "M",
        "--grant-type",
        "client_credentials",
        "--scope",
        "admin",
        "--auth-method",
        "private_key_jwt",
    )
    assert r.exit_code != 0
    assert "A private_key_jwt client must register its public keys: jwks or jwks_uri." in r.output


def test_client_secret_jwt_client_and_secret_rotation(cli, client, tmp_path) -> None:
    made = _cli_client(cli, tmp_path, "client_secret_jwt")
    cid, secret = made["client_id"], made["client_secret"]
    r = client.post("/oauth/token", data=with_assertion(CC, hs256(cid, secret)))
    assert r.status_code == 200, r.json
    r = cli("clients", "rotate-secret", cid)
    assert r.exit_code == 0
    new = json.loads(r.output)["client_secret"]
    r = client.post("/oauth/token", data=with_assertion(CC, hs256(cid, secret)))
    assert r.status_code == 401
    assert r.json == {
        "error": "invalid_client",
        "error_description": "The client_assertion's signature does not verify with this "
        "client's key.",
    }
    r = client.post("/oauth/token", data=with_assertion(CC, hs256(cid, new)))
    assert r.status_code == 200


class JwksServer:
    """A real HTTP server on 127.0.0.1 serving a JWK Set at /jwks.json; counts the GETs and
    the Host headers it was sent."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.fetches = 0
        self.hosts: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.fetches += 1
                outer.hosts.append(self.headers.get("Host", ""))
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/jwks.json")
                    self.end_headers()
                    return
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str = "/jwks.json") -> str:
        return f"http://localhost:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_registered_client_with_jwks_uri_and_key_rotation(client, auth_app, monkeypatch) -> None:
    """Keys from the jwks_uri (a real server, by name) are cached; a new kid triggers one
    new fetch (key rotation); a document with a private key is not used."""
    from auth_server import client_auth

    client_auth.JWKS_CACHE.clear()
    old, new = ec_key("old"), RSAKey.generate_key(2048, parameters={"kid": "new"})
    server = JwksServer(public_jwks(old))
    try:
        r = register(
            client,
            {
                "client_name": "Server app",
                "redirect_uris": ["https://app.example/cb"],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks_uri": server.url(),
            },
            mint(auth_app),
        )
        assert r.status_code == 201, r.json
        cid = r.json["client_id"]

        def revoke(key: Any, alg: str) -> Any:
            data = with_assertion({"token": "unknown"}, assertion(cid, key, alg))
            return client.post("/oauth/revoke", data=data)

        assert revoke(old, "ES256").status_code == 200
        assert revoke(old, "ES256").status_code == 200
        assert server.fetches == 1  # cached
        assert server.hosts == [f"localhost:{server.port}"]  # the name, though sent to an address
        server.document = public_jwks(old, new)
        monkeypatch.setattr(client_auth, "JWKS_REFETCH", 0)
        assert revoke(new, "PS256").status_code == 200
        assert server.fetches == 2
        server.document = {"keys": [{**new.as_dict(private=True)}]}  # a broken document
        client_auth.JWKS_CACHE.clear()
        r = revoke(new, "PS256")
        assert r.status_code == 401
        assert r.json["error_description"] == (
            "No key of this client's jwks or jwks_uri matches the client_assertion (its kid "
            "and alg)."
        )
    finally:
        server.close()


def test_jwks_uri_fetch_follows_no_redirect_and_production_fetches_no_private_address(
    auth_app, monkeypatch
) -> None:
    """The fetch goes to the address that was resolved and checked, naming the host only in
    Host (a second lookup could answer differently: DNS rebinding); a redirect is not
    followed; in production a host that resolves to loopback is never fetched."""
    from auth_server import client_auth

    key = ec_key("k")
    server = JwksServer(public_jwks(key))
    try:
        with auth_app.app_context():
            assert client_auth._fetch_jwks(server.url("/moved")) is None
            assert server.fetches == 1
            # jwks.invalid resolves nowhere (RFC 2606): only the checked address is used.
            real = client_auth._resolve
            monkeypatch.setattr(
                client_auth,
                "_resolve",
                lambda host, port: ["127.0.0.1"] if host == "jwks.invalid" else real(host, port),
            )
            document = client_auth._fetch_jwks(f"http://jwks.invalid:{server.port}/jwks.json")
            assert document is not None
            assert [k["kid"] for k in document["keys"]] == ["k"]
            assert server.hosts[-1] == f"jwks.invalid:{server.port}"
            monkeypatch.setattr(client_auth, "_resolve", real)
            monkeypatch.setitem(auth_app.config, "APP_ENV", "production")
            before = server.fetches
            assert client_auth._fetch_jwks(server.url()) is None  # localhost: loopback
            assert server.fetches == before  # not even one request
    finally:
        server.close()


def test_discovery_lists_the_methods_and_algorithms(client) -> None:
    meta = client.get("/.well-known/oauth-authorization-server").json
    for endpoint in ("token", "revocation", "introspection"):
        for method in ("private_key_jwt", "client_secret_jwt"):
            assert method in meta[f"{endpoint}_endpoint_auth_methods_supported"]
        algs = meta[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]
        assert "ES256" in algs and "HS256" in algs and "none" not in algs
