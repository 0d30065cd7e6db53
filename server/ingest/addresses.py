"""Which network addresses a URL may be fetched from (server-side request forgery guard)."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def refusal(address: str, allow_private: bool) -> str | None:
    """Why `address` must not be fetched from, or None when it may.

    Loopback and private ranges open only with `allow_private`; link-local (the cloud
    metadata service at 169.254.169.254 among them), multicast, reserved and
    unspecified addresses never do.
    """
    try:
        ip = _unmapped(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return f"{address!r} is not an IP address"
    if ip.is_link_local:
        return "link-local addresses (cloud metadata) are not allowed"
    if ip.is_multicast or ip.is_unspecified or (ip.is_reserved and not ip.is_loopback):
        return "multicast, unspecified and reserved addresses are not allowed"
    if ip.is_loopback or ip.is_private or not ip.is_global:
        return None if allow_private else "private and loopback addresses are not allowed"
    return None
