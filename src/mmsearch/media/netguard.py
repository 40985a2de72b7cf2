"""SSRF guard: which URLs and resolved addresses a fetch may connect to.

`resolve_target` resolves the host once and refuses loopback, private, link-local, multicast, reserved,
unspecified and other non-global addresses (IPv4-mapped IPv6 is judged as the IPv4 it carries) unless
`allow_private` or an allow-listed network says otherwise. The fetcher then connects to the very address
checked here (the URL is rewritten to the IP; Host header and TLS SNI/certificate name stay the host), so a
DNS answer that changes between check and connect (rebinding) cannot move the request. Every redirect
hop goes through this again.

Remaining gaps, documented rather than hidden: addresses that embed IPv4 in other ways (6to4 2002::/16,
Teredo, NAT64 64:ff9b::/96) are refused only because they are not `is_global`, not decoded; and a host
that is allowed may itself proxy to internal services, which no address check can see.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from mmsearch.media.errors import UnsafeURL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ALLOWED_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`ip`) and what to call the host (`host`, for Host header and SNI)."""

    url: str
    scheme: str
    host: str
    port: int
    ip: IPAddress  # the first checked address
    ips: tuple[IPAddress, ...] = ()  # every checked address, tried in order when a connection fails


def parse_networks(networks: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Allow-list entries as networks ('127.0.0.1/32', '10.0.0.0/8', '::1')."""
    return tuple(ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in networks)


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` must not be contacted by default, or None when it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        inner = address_problem(ip.ipv4_mapped)
        return f"{inner} (IPv4-mapped)" if inner else None
    for attr, label in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    ):
        if getattr(ip, attr):
            return label
    if not ip.is_global:
        return "not globally routable"
    return None


def check_address(
    ip: IPAddress, allow_private: bool = False, allowed_networks: Iterable[IPNetwork] = (), field: str = "url"
) -> None:
    """Raise UnsafeURL when `ip` is non-public and neither `allow_private` nor the allow-list admits it."""
    problem = address_problem(ip)
    if problem is None or allow_private:
        return
    plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
    if any(plain in net or ip in net for net in allowed_networks):
        return
    raise UnsafeURL(
        f"{field}: address {ip} is {problem} and not allowed by the fetch configuration (SSRF guard); to fetch "
        "from networks you trust, set MMSEARCH_ALLOW_PRIVATE_NETWORKS=true",
        field=field,
    )


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All addresses `host` resolves to (an IP literal is returned without asking DNS)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in seen:
            seen.append(ip)
    return seen


def resolve_target(
    url: str,
    allow_private: bool = False,
    allowed_networks: Iterable[IPNetwork] = (),
    field: str = "url",
    schemes: tuple[str, ...] = ALLOWED_SCHEMES,
) -> Target:
    """Check scheme and host of `url`, resolve it, and refuse it unless every address it resolves to is allowed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"{field}: malformed URL: {exc}", field=field) from exc
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise UnsafeURL(
            f"{field}: scheme {scheme or '(none)'!r} is not allowed; use {' or '.join(schemes)}", field=field
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURL(f"{field}: URL has no host", field=field)
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL(f"{field}: URLs with credentials are not allowed", field=field)
    port = port or (443 if scheme == "https" else 80)
    try:
        addresses = resolve_host(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"{field}: host {host!r} does not resolve: {exc}", field=field) from exc
    if not addresses:
        raise UnsafeURL(f"{field}: host {host!r} does not resolve", field=field)
    nets = tuple(allowed_networks)
    for ip in addresses:  # all of them: the one we do not pick could be served on a retry elsewhere
        check_address(ip, allow_private, nets, field)
    return Target(url=url, scheme=scheme, host=host, port=port, ip=addresses[0], ips=tuple(addresses))
