"""The SSRF guard of outbound webhooks: a URL may only reach public addresses, unless allow-listed.

The host is resolved once; every address it resolves to must be global (not private, loopback,
link-local, reserved, shared, multicast or unspecified; IPv4-mapped IPv6 judged as IPv4), or lie in an
allow-listed network, or the host name itself must be allow-listed. The request is then pinned to the
checked address (transport.py), so a second, different DNS answer cannot redirect it.

The allow-list (Settings.webhook_allow_hosts) is comma-separated host names, IP addresses and CIDR networks,
e.g. "127.0.0.1, hooks.internal.example, 10.20.0.0/16".
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from urllib3.util import parse_url

from incident_loop.skills.errors import ExternalError, SkillInputError, TargetNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (ip), and what the breaker calls it (host:port)."""

    url: str
    scheme: str
    host: str
    port: int
    ip: str

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order."""
    infos: list[Any] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_allow_list(text: str) -> tuple[frozenset[str], tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]]:
    """(host names, networks) from the comma-separated allow-list."""
    hosts, networks = set(), []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return frozenset(hosts), tuple(networks)


# IPv6 prefixes that carry an IPv4 address a gateway would reach: NAT64 (well-known and local-use) and the
# deprecated IPv4-compatible form. 6to4 (2002::/16) is unwrapped through `sixtofour`.
_EMBEDS_IPV4 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"),
                ipaddress.ip_network("::/96"))


def _address(text: str) -> IPAddress:
    """The address a connection to `text` reaches: an IPv4 address carried inside IPv6 is judged as itself."""
    ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if any(ip in net for net in _EMBEDS_IPV4) and int(ip) > 1:  # not :: or ::1, judged as they are
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def public(ip: IPAddress) -> bool:
    """Whether an address is on the public internet (and so needs no allow-listing)."""
    return ip.is_global and not ip.is_multicast and not ip.is_unspecified


def check(url: str, allow: str, resolver: Resolver = resolve) -> Target:
    """The URL's target if every address it reaches is allowed; TargetNotAllowed (or SkillInputError) if not."""
    try:
        parts = parse_url(url)
    except ValueError as exc:
        # Never the parser's message: it quotes the input, which may have come from a secret.
        raise SkillInputError(f"not a URL ({type(exc).__name__})") from None
    if parts.scheme not in ("http", "https") or not parts.host:
        raise SkillInputError("a webhook URL must be http(s)://host/...")
    if parts.auth:
        raise SkillInputError("a webhook URL may not carry credentials")
    host = parts.host.strip("[]").lower().rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    hosts, networks = parse_allow_list(allow)
    try:
        addresses = resolver(host, port)
    except UnicodeError:  # an empty label, or one over 63 bytes: no lookup will ever succeed
        raise SkillInputError(f"{host} is not a valid host name") from None
    except OSError as exc:
        raise ExternalError(f"{host} did not resolve: {exc}", code="dns_error", retryable=True) from exc
    if not addresses:
        raise ExternalError(f"{host} did not resolve", code="dns_error", retryable=True)
    if host not in hosts:
        for text in addresses:
            ip = _address(text)
            if not public(ip) and not any(ip in net for net in networks if net.version == ip.version):
                raise TargetNotAllowed(f"{host} resolves to {ip}, a non-public address that is not "
                                       f"allow-listed (WEBHOOK_ALLOW_HOSTS)")
    return Target(url=url, scheme=parts.scheme, host=host, port=port, ip=addresses[0])
