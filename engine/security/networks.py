"""Comma-separated lists of networks in settings (TRUSTED_PROXIES, HTTP_ALLOWLIST)."""

from __future__ import annotations

import ipaddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def split_networks(text: str) -> tuple[tuple[IPNetwork, ...], tuple[str, ...]]:
    """The IP addresses and CIDRs of a comma-separated list, and the entries that are neither.

    Blank entries are skipped; an IPv6 address may be bracketed (`[::1]`) as in a URL.
    """
    networks: list[IPNetwork] = []
    others: list[str] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            others.append(entry)
    return tuple(networks), tuple(others)
