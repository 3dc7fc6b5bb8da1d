"""Webhook URLs checked against server-side request forgery (SSRF).

A webhook makes the call API's worker send a POST to a URL an app chose. Without a check,
an app could aim it at the service's own network: a database admin page on 10.0.0.5, the
cloud metadata service (169.254.169.254, which hands out credentials), a port on loopback.
So a URL is refused when its host resolves to any address that is not public, unless the
operator allowed that address with ``CALL_WEBHOOK_ALLOWED_NETWORKS``.

The check runs twice: when the URL is registered (a clear 400 for the app), and again at
every delivery (``resolve_for_delivery``), because DNS can change in between (a name that
resolved to a public address at registration may later resolve to 127.0.0.1: DNS
rebinding). The worker then connects to the very address it checked (``Target.addresses``),
never to a second lookup of the name, and it never follows redirects.

Every form of an address is judged by the address it reaches: decimal (``2130706433``),
octal and hex IPv4 (``getaddrinfo`` turns them into ``127.0.0.1``), and IPv6 forms that
carry an IPv4 address (``::ffff:127.0.0.1``, 6to4, NAT64, Teredo) by that IPv4 address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from shared.config import ConfigError
from shared.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048
SETTING = "CALL_WEBHOOK_ALLOWED_NETWORKS"

# Where a local receiver lives during development: loopback and the private ranges.
DEVELOPMENT_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
# The cloud instance metadata services (AWS, GCP, Azure, …; AWS's IPv6 one). They hand out
# the machine's credentials, so only a network that names them narrowly unlocks them.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# A network wider than this (0.0.0.0/0, fc00::/7, …) is not "listing" a metadata address.
_METADATA_MIN_PREFIX = {4: 16, 6: 32}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_networks(value: object, production: bool) -> list[IPNetwork]:
    """``CALL_WEBHOOK_ALLOWED_NETWORKS`` as networks.

    ``None`` (unset) is the default: loopback and private ranges in development, nothing in
    production. ``["none"]`` is explicitly nothing. A host address (``10.0.0.5``) is a
    network of one; host bits are ignored (``10.1.2.3/8`` is ``10.0.0.0/8``).
    """
    if value is None:
        return [] if production else list(DEVELOPMENT_NETWORKS)
    items = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    if [str(i).strip().lower() for i in items] == ["none"]:
        return []
    networks: list[IPNetwork] = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(
                f"{SETTING} has {item!r}, which is not a network (CIDR such as 10.0.0.0/8 "
                "or an address)"
            ) from exc
    return networks


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address really reaches (mapped, 6to4, NAT64, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_class(address: IPAddress) -> str | None:
    """What kind of non-public address this is (``"a private address"``), or ``None``."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return address_class(inner)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "a non-public address"
    return None


def _allowed(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    """Whether an allowed network holds ``address`` (or the IPv4 address it carries)."""
    inner = embedded_ipv4(address)
    candidates = [address] if inner is None else [address, inner]
    for candidate in candidates:
        for network in networks:
            if candidate.version != network.version or candidate not in network:
                continue
            if candidate not in METADATA_ADDRESSES:
                return True
            if (
                network not in DEVELOPMENT_NETWORKS
                and network.prefixlen >= _METADATA_MIN_PREFIX[network.version]
            ):
                return True
    return False


@dataclass(frozen=True)
class Target:
    """Where a checked URL's request goes: the addresses to connect to (in resolver order,
    every one of them checked) and what the request says (scheme, host, port, path)."""

    scheme: str
    host: str  # the name as written: the Host header, the TLS SNI and certificate name
    port: int
    path: str  # path and query: the request target
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _parse(url: object, production: bool) -> tuple[SplitResult, str, int]:
    if not isinstance(url, str) or not url:
        raise InvalidRequest("The webhook URL must be an http:// or https:// URL.")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"The webhook URL must be at most {MAX_URL_LENGTH} characters.")
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in url):
        raise InvalidRequest(
            "The webhook URL must be printable ASCII without spaces (percent-encode the path, "
            "write international host names in punycode)."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"The webhook URL is malformed: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest("The webhook URL must be an http:// or https:// URL.")
    if production and parts.scheme != "https":
        raise InvalidRequest("The webhook URL must be an https:// URL.")
    if "@" in parts.netloc:
        raise InvalidRequest("The webhook URL must not contain a user name or password.")
    host = parts.hostname
    if not host:
        raise InvalidRequest("The webhook URL must name a host.")
    if port == 0:
        raise InvalidRequest("The webhook URL's port must be from 1 to 65535.")
    return parts, host, port or (443 if parts.scheme == "https" else 80)


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        raise InvalidRequest(f"The webhook URL's host {host} does not resolve.") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise InvalidRequest(f"The webhook URL's host {host} does not resolve.")
    return addresses


def _check_addresses(addresses: Iterable[IPAddress], networks: list[IPNetwork]) -> None:
    """Refuse if ANY address is non-public and not allowed: a name with one public and one
    private address could otherwise reach the private one."""
    for address in addresses:
        kind = address_class(address)
        if kind is None or _allowed(address, networks):
            continue
        if address in METADATA_ADDRESSES or embedded_ipv4(address) in METADATA_ADDRESSES:
            how = f"list it explicitly in {SETTING} to allow it"
        else:
            how = f"set {SETTING} to allow it"
        raise InvalidRequest(
            f"The webhook URL's host resolves to {_display(address)}, {kind}; {how}."
        )


def _display(address: IPAddress) -> str:
    """The address as people write it (Python shows ``::ffff:127.0.0.1`` as ``::ffff:7f00:1``)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _networks(config: Mapping[str, Any]) -> list[IPNetwork]:
    return parse_networks(config.get(SETTING), _production(config))


def _production(config: Mapping[str, Any]) -> bool:
    return config.get("APP_ENV") == "production"


def resolve_for_delivery(url: object, config: Mapping[str, Any]) -> Target:
    """Check ``url`` again, now, and say where to connect: ``InvalidRequest`` if refused.

    The caller connects to ``Target.addresses`` (not to the name: a second lookup could
    answer differently), sends ``Host: Target.host_header`` and checks TLS against
    ``Target.host``.
    """
    parts, host, port = _parse(url, _production(config))
    addresses = _resolve(host, port)
    _check_addresses(addresses, _networks(config))
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(parts.scheme, host, port, path, tuple(str(a) for a in addresses))


def check_webhook_url(url: object, config: Mapping[str, Any]) -> str:
    """``url`` if it may receive webhooks, else ``InvalidRequest`` (400) saying why.

    http or https (https only in production), no user name or password, at most 2048
    characters, and a host that resolves only to public addresses or to addresses in
    ``CALL_WEBHOOK_ALLOWED_NETWORKS``.
    """
    resolve_for_delivery(url, config)
    assert isinstance(url, str)
    return url
