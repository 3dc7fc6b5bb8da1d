"""Webhook URLs against SSRF (``call_api.ssrf``): what is refused and the exact reason, the
allowed-networks setting, the metadata addresses, and DNS answers checked at delivery time
(no rebinding). Plain function tests need no database; the HTTP ones go through the admin
API and POST /rest/call."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from call_api.ssrf import check_webhook_url, parse_networks, resolve_for_delivery
from shared.config import ConfigError
from shared.errors import InvalidRequest
from tests.call_api.helpers import NUMBER, good_claims
from tests.call_api.test_webhooks import Receiver, run_worker
from tests.conftest import bearer

PRODUCTION: dict[str, Any] = {"APP_ENV": "production"}  # default networks: none
DEVELOPMENT: dict[str, Any] = {"APP_ENV": "development"}  # loopback + private
HOW = "set CALL_WEBHOOK_ALLOWED_NETWORKS to allow it."
METADATA_HOW = "list it explicitly in CALL_WEBHOOK_ALLOWED_NETWORKS to allow it."


def refusal(url: object, config: dict[str, Any]) -> str:
    with pytest.raises(InvalidRequest) as info:
        check_webhook_url(url, config)
    return info.value.description


def resolves(address: str, kind: str, how: str = HOW) -> str:
    return f"The webhook URL's host resolves to {address}, {kind}; {how}"


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names ending in ``.test`` resolve to what the test puts in the returned dict."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".test"):
            if host not in answers:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port, 0, 0) if ":" in a else (a, port),
                )
                for a in answers[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return answers


@pytest.mark.parametrize(
    "url, address, kind",
    [
        ("https://127.0.0.1/hook", "127.0.0.1", "a loopback address"),
        ("https://10.0.0.5/hook", "10.0.0.5", "a private address"),
        ("https://172.16.3.4/", "172.16.3.4", "a private address"),
        ("https://192.168.1.1/", "192.168.1.1", "a private address"),
        ("https://[::1]/hook", "::1", "a loopback address"),
        ("https://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", "a loopback address"),
        ("https://[::ffff:10.1.2.3]/", "::ffff:10.1.2.3", "a private address"),
        ("https://[2002:7f00:1::1]/", "2002:7f00:1::1", "a loopback address"),  # 6to4
        ("https://[64:ff9b::a00:1]/", "64:ff9b::a00:1", "a private address"),  # NAT64
        ("https://2130706433/", "127.0.0.1", "a loopback address"),  # decimal
        ("https://0x7f.1/", "127.0.0.1", "a loopback address"),  # hex, short form
        ("https://017700000001/", "127.0.0.1", "a loopback address"),  # octal
        ("https://0.0.0.0/", "0.0.0.0", "an unspecified address"),
        ("https://[fe80::1]/", "fe80::1", "a link-local address"),
        ("https://169.254.1.1/", "169.254.1.1", "a link-local address"),
        ("https://224.0.0.1/", "224.0.0.1", "a multicast address"),
        ("https://[fd12::1]/", "fd12::1", "a private address"),
        ("https://100.64.0.1/", "100.64.0.1", "a non-public address"),  # carrier-grade NAT
    ],
)
def test_production_refuses_non_public_addresses(url, address, kind):
    assert refusal(url, PRODUCTION) == resolves(address, kind)


@pytest.mark.parametrize(
    "url, address",
    [
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("https://[fd00:ec2::254]/", "fd00:ec2::254"),
        ("https://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254"),
    ],
)
def test_metadata_addresses_are_refused_even_in_development(url, address):
    """Development allows loopback and private ranges (fd00:ec2::254 is inside fc00::/7),
    never the metadata service."""
    kind = "a cloud metadata address"
    assert refusal(url, PRODUCTION) == resolves(address, kind, METADATA_HOW)
    assert refusal(url, DEVELOPMENT) == resolves(address, kind, METADATA_HOW)


@pytest.mark.parametrize(
    "networks, allowed",
    [
        (["169.254.169.254/32"], True),
        (["169.254.169.0/24"], True),
        (["169.254.0.0/16"], True),
        (["0.0.0.0/0"], False),  # allowing everything does not name the metadata service
        (["128.0.0.0/1"], False),
        (["10.0.0.0/8"], False),
    ],
)
def test_metadata_address_only_when_listed_narrowly(networks, allowed):
    config = {**PRODUCTION, "CALL_WEBHOOK_ALLOWED_NETWORKS": networks}
    url = "https://169.254.169.254/"
    if allowed:
        assert check_webhook_url(url, config) == url
    else:
        assert refusal(url, config) == resolves(
            "169.254.169.254", "a cloud metadata address", METADATA_HOW
        )


def test_allowed_networks_setting():
    config = {**PRODUCTION, "CALL_WEBHOOK_ALLOWED_NETWORKS": ["10.0.0.0/8", "::1"]}
    assert check_webhook_url("https://10.0.0.5/h", config) == "https://10.0.0.5/h"
    assert check_webhook_url("https://[::1]:8443/h", config) == "https://[::1]:8443/h"
    assert check_webhook_url("https://[::ffff:10.0.0.5]/", config) == "https://[::ffff:10.0.0.5]/"
    assert refusal("https://127.0.0.1/", config) == resolves("127.0.0.1", "a loopback address")
    assert refusal("https://192.168.0.1/", config) == resolves("192.168.0.1", "a private address")
    # Development's default allows loopback and private ranges, over http too.
    assert check_webhook_url("http://127.0.0.1:9000/", DEVELOPMENT) == "http://127.0.0.1:9000/"
    assert check_webhook_url("http://[fd12::1]/", DEVELOPMENT) == "http://[fd12::1]/"
    none = {**DEVELOPMENT, "CALL_WEBHOOK_ALLOWED_NETWORKS": ["none"]}
    assert refusal("http://127.0.0.1/", none) == resolves("127.0.0.1", "a loopback address")
    # Public addresses need nothing.
    assert check_webhook_url("https://8.8.8.8/h?x=1", PRODUCTION) == "https://8.8.8.8/h?x=1"


def test_parse_networks():
    assert [str(n) for n in parse_networks(None, production=True)] == []
    assert [str(n) for n in parse_networks(None, production=False)] == [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    ]
    assert [str(n) for n in parse_networks(["10.1.2.3/8", "fd00::1"], True)] == [
        "10.0.0.0/8",
        "fd00::1/128",
    ]
    assert parse_networks(["none"], production=False) == []
    with pytest.raises(ConfigError) as info:
        parse_networks(["10.0.0.0/33"], production=True)
    assert str(info.value) == (
        "CALL_WEBHOOK_ALLOWED_NETWORKS has '10.0.0.0/33', which is not a network (CIDR such "
        "as 10.0.0.0/8 or an address)"
    )


@pytest.mark.parametrize(
    "url, config, description",
    [
        (None, DEVELOPMENT, "The webhook URL must be an http:// or https:// URL."),
        ("", DEVELOPMENT, "The webhook URL must be an http:// or https:// URL."),
        ("ftp://8.8.8.8/", DEVELOPMENT, "The webhook URL must be an http:// or https:// URL."),
        ("javascript:alert(1)", DEVELOPMENT, "The webhook URL must be an http:// or https:// URL."),
        ("http://8.8.8.8/", PRODUCTION, "The webhook URL must be an https:// URL."),
        ("http://127.0.0.1/", PRODUCTION, "The webhook URL must be an https:// URL."),
        (
            "https://user:pw@8.8.8.8/",
            PRODUCTION,
            "The webhook URL must not contain a user name or password.",
        ),
        (
            "https://@8.8.8.8/",
            PRODUCTION,
            "The webhook URL must not contain a user name or password.",
        ),
        ("https:///path", PRODUCTION, "The webhook URL must name a host."),
        ("https://8.8.8.8:0/", PRODUCTION, "The webhook URL's port must be from 1 to 65535."),
        (
            "https://8.8.8.8:99999/",
            PRODUCTION,
            "The webhook URL is malformed: Port out of range 0-65535.",
        ),
        (
            "https://8.8.8.8/" + "a" * 2040,
            PRODUCTION,
            "The webhook URL must be at most 2048 characters.",
        ),
        (
            "https://exa mple.com/",
            PRODUCTION,
            "The webhook URL must be printable ASCII without spaces (percent-encode the path, "
            "write international host names in punycode).",
        ),
        (
            "https://bücher.example/",
            PRODUCTION,
            "The webhook URL must be printable ASCII without spaces (percent-encode the path, "
            "write international host names in punycode).",
        ),
    ],
)
def test_malformed_urls(url, config, description):
    assert refusal(url, config) == description


def test_a_name_is_judged_by_every_address_it_resolves_to(dns):
    """One private address among public ones is enough to refuse; a name that does not
    resolve is refused at registration."""
    dns["mixed.test"] = ["8.8.8.8", "10.0.0.7"]
    assert refusal("https://mixed.test/", PRODUCTION) == resolves("10.0.0.7", "a private address")
    dns["public.test"] = ["8.8.8.8", "2001:4860:4860::8888"]
    assert check_webhook_url("https://public.test/", PRODUCTION) == "https://public.test/"
    assert refusal("https://nowhere.test/", PRODUCTION) == (
        "The webhook URL's host nowhere.test does not resolve."
    )


def test_delivery_resolves_again_and_pins_the_address(dns):
    """The delivery-time check resolves the name now, refuses what it resolves to now
    (DNS rebinding), and names the address to connect to, keeping the name for Host/TLS."""
    dns["hooks.test"] = ["93.184.216.34"]
    target = resolve_for_delivery("https://hooks.test:8443/in?a=b", PRODUCTION)
    assert (target.scheme, target.host, target.port, target.path, target.addresses) == (
        "https",
        "hooks.test",
        8443,
        "/in?a=b",
        ("93.184.216.34",),
    )
    assert target.host_header == "hooks.test:8443"
    assert resolve_for_delivery("https://hooks.test/", PRODUCTION).host_header == "hooks.test"
    dns["hooks.test"] = ["127.0.0.1"]  # the name now points inside
    with pytest.raises(InvalidRequest) as info:
        resolve_for_delivery("https://hooks.test/", PRODUCTION)
    assert info.value.description == resolves("127.0.0.1", "a loopback address")


def test_worker_connects_to_the_checked_address_with_the_name_in_host(
    dns, make_call_app, forge: Callable[..., str]
):
    """Through the worker: it POSTs to the address it checked, with Host naming the host;
    when the name later resolves somewhere refused, the attempt fails and nothing is sent."""
    app = make_call_app(CALL_WEBHOOK_ALLOWED_NETWORKS=["127.0.0.1/32"])
    api = app.test_client()
    admin = bearer(forge(good_claims(scope="admin", sub="ops", client_id="ops", username=None)))
    receiver = Receiver()
    try:
        dns["hooks.test"] = ["127.0.0.1"]
        url = f"http://hooks.test:{receiver.port}/in"
        r = api.put("/admin/clients/app-1/webhook", json={"url": url}, headers=admin)
        assert r.status_code == 201, r.json
        token = forge(good_claims(client_id="app-1"))
        r = api.post("/rest/call", json={"number": NUMBER}, headers=bearer(token))
        assert r.status_code == 201
        call = r.json
        run_worker(app)
        assert [(x.path, x.headers["host"]) for x in receiver.requests] == [
            ("/in", f"hooks.test:{receiver.port}")
        ]
        dns["hooks.test"] = ["10.0.0.9"]  # rebinding: now a refused address
        r = api.put("/rest/call", json={"token_call": call["token_call"]}, headers=bearer(token))
        assert r.status_code == 200
        run_worker(app)
        assert len(receiver.requests) == 1
        events = api.get(f"/admin/calls/{call['token_call']}/events", headers=admin).json
        assert [(e["delivery"], e["last_error"]) for e in events["events"]] == [
            ("delivered", None),
            ("pending", "refused: " + resolves("10.0.0.9", "a private address")),
        ]
    finally:
        receiver.close()


def test_status_callback_is_checked_when_the_call_is_made(make_call_app, forge):
    """POST /rest/call refuses a status_callback that points inside (400, nothing queued)."""
    app = make_call_app(CALL_WEBHOOK_ALLOWED_NETWORKS=["none"])
    token = forge(good_claims(client_id="app-1"))
    r = app.test_client().post(
        "/rest/call",
        json={"number": NUMBER, "status_callback": "http://[::1]:9/cb"},
        headers=bearer(token),
    )
    assert (r.status_code, r.json) == (
        400,
        {"error": "invalid_request", "error_description": resolves("::1", "a loopback address")},
    )
    r = app.test_client().get("/rest/call", headers=bearer(token))
    assert r.json == {"calls": []}


def test_registration_allowed_networks_over_http(make_call_app, forge):
    """The setting decides, through the admin API: development's default takes loopback,
    "none" refuses it, a listed network takes it again."""
    admin = bearer(forge(good_claims(scope="admin", sub="ops", client_id="ops", username=None)))
    url = "http://127.0.0.1:9/h"
    for setting, status in ((None, 201), (["none"], 400), (["127.0.0.0/24"], 201)):
        extra = {} if setting is None else {"CALL_WEBHOOK_ALLOWED_NETWORKS": setting}
        api = make_call_app(**extra).test_client()
        api.delete("/admin/clients/app-1/webhook", headers=admin)
        r = api.put("/admin/clients/app-1/webhook", json={"url": url}, headers=admin)
        assert r.status_code == status, (setting, r.json)


PRODUCTION_ISSUER = "https://auth.example.test"


@pytest.mark.parametrize("databases", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "url, description",
    [
        ("http://127.0.0.1/hook", "The webhook URL must be an https:// URL."),
        ("https://127.0.0.1/hook", resolves("127.0.0.1", "a loopback address")),
        ("https://10.0.0.5/hook", resolves("10.0.0.5", "a private address")),
        (
            "https://169.254.169.254/",
            resolves("169.254.169.254", "a cloud metadata address", METADATA_HOW),
        ),
        ("https://[::1]/", resolves("::1", "a loopback address")),
        ("https://[::ffff:127.0.0.1]/", resolves("::ffff:127.0.0.1", "a loopback address")),
        ("https://2130706433/", resolves("127.0.0.1", "a loopback address")),
    ],
)
def test_production_app_refuses_inside_addresses(databases, make_call_app, forge, url, description):
    """An app configured for production (APP_ENV=production: PostgreSQL, an https issuer)
    refuses them at registration with a 400 saying why, and registers nothing."""
    app = make_call_app(APP_ENV="production", AUTH_ISSUER=PRODUCTION_ISSUER)
    assert app.config["CALL_WEBHOOK_ALLOWED_NETWORKS"] == []
    claims = good_claims(
        scope="admin", sub="ops", client_id="ops", username=None, iss=PRODUCTION_ISSUER
    )
    admin = bearer(forge(claims))
    api = app.test_client()
    r = api.put("/admin/clients/app-1/webhook", json={"url": url}, headers=admin)
    assert (r.status_code, r.json) == (
        400,
        {"error": "invalid_request", "error_description": description},
    )
    assert api.get("/admin/clients/app-1/webhook", headers=admin).status_code == 404
