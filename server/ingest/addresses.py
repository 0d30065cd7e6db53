"""Which network addresses a URL may be fetched from (server-side request forgery guard).

Three verdicts: public addresses are fetched; loopback and private ranges only with
`allow_private`; everything else never: the IANA special-purpose ranges (IPv4 and IPv6),
link-local, multicast, documentation, benchmarking, and the cloud metadata endpoints that
live outside link-local. An address that carries another (IPv4-mapped or -compatible,
NAT64, 6to4, Teredo) gets the verdict of the address it carries.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_net = ipaddress.ip_network

METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, ...
    "169.254.170.2",  # AWS ECS task metadata
    "fd00:ec2::254",  # AWS IMDS over IPv6 (a unique-local address)
    "100.100.100.200",  # Alibaba Cloud (shared address space)
    "192.0.0.192",  # Oracle Cloud
))
NEVER: tuple[Network, ...] = tuple(_net(n) for n in (
    "0.0.0.0/8", "169.254.0.0/16", "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
    "192.88.99.0/24", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128", "100::/64", "2001:2::/48", "2001:10::/28", "2001:20::/28", "2001:db8::/32", "3fff::/20", "5f00::/16",
    "fe80::/10", "fec0::/10", "ff00::/8",
))
PRIVATE: tuple[Network, ...] = tuple(_net(n) for n in (
    "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7",
))
NAT64 = (_net("64:ff9b::/96"), _net("64:ff9b:1::/48"))
IPV4_COMPATIBLE = _net("::/96")


def carried(ip: IPAddress) -> list[IPAddress]:
    """The IPv4 addresses an IPv6 address carries, if it is one of the embedding forms."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if any(ip in net for net in NAT64) or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def refusal(address: str, allow_private: bool) -> str | None:
    """Why `address` must not be fetched from, or None when it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    inner = carried(ip)
    if inner:
        reasons = [r for r in (refusal(str(a), allow_private) for a in inner) if r]
        return f"{reasons[0]} (carried in {ip})" if reasons else None
    if ip in METADATA or ip.is_link_local:
        return "cloud metadata and link-local addresses are never fetched"
    if any(ip in net for net in NEVER) or ip.is_multicast:
        return "special-purpose addresses are never fetched"
    if any(ip in net for net in PRIVATE):
        return None if allow_private else "private and loopback addresses are not allowed"
    if not ip.is_global:
        return "addresses that are not globally reachable are never fetched"
    return None
