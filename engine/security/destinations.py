"""Which destinations outbound HTTP may reach: the SSRF address policy (pure, plus a lookup).

tasks/http_client.py applies it where sockets are opened (every request and redirect hop);
`url_destination_problem` applies it ahead of time to a URL a user hands in (a callback
target at start), so a forbidden address is refused with a 422 instead of failing later.
Delivery still goes through the guarded client: DNS can change in between.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from engine.errors import ErrorKind, StepError
from engine.security.networks import IPNetwork, split_networks

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: What a caller is told when a host name does not resolve (details go to the operator log).
HOST_NOT_FOUND = "host not found"

logger = logging.getLogger("supaflow.http")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_FORBIDDEN_LABELS = (
    ("unspecified", "the unspecified address"),
    ("loopback", "a loopback address"),
    ("link_local", "a link-local address"),
    ("multicast", "a multicast address"),
    ("private", "a private address"),
    ("reserved", "a reserved address"),
)

# ---------------------------------------------------------------------------------------------
# Address policy (pure)
# ---------------------------------------------------------------------------------------------


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (IPv4-mapped, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why outbound HTTP may not reach `ip`, or None when it is a public address."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        reason = forbidden_reason(inner)
        return f"{reason} (embedded in {ip})" if reason else None
    for attribute, label in _FORBIDDEN_LABELS:
        if getattr(ip, f"is_{attribute}"):
            return f"{ip} is {label}"
    if not ip.is_global:
        return f"{ip} is not a globally routable address"
    return None


@dataclass(frozen=True)
class Allowlist:
    """Destinations the operator permits even though they are not public addresses."""

    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    def permits_host(self, host: str) -> bool:
        """Whether the host name itself is allow-listed (exact, case-insensitive)."""
        return host.lower().rstrip(".") in self.hosts

    def permits_ip(self, ip: IPAddress) -> bool:
        """Whether the address (or the IPv4 address it embeds) is in an allowed network."""
        candidates: list[IPAddress] = [ip]
        inner = embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
        return any(
            c in net for c in candidates for net in self.networks if c.version == net.version
        )


@lru_cache(maxsize=32)
def parse_allowlist(text: str) -> Allowlist:
    """Parse `HTTP_ALLOWLIST`: comma-separated host names, IP addresses and CIDRs."""
    networks, hosts = split_networks(text)
    return Allowlist(frozenset(host.lower().rstrip(".") for host in hosts), networks)


def check_address(host: str, ip: IPAddress, allowlist: Allowlist) -> None:
    """Raise StepError(FORBIDDEN_ADDRESS) unless `host` resolving to `ip` may be reached."""
    if allowlist.permits_host(host) or allowlist.permits_ip(ip):
        return
    reason = forbidden_reason(ip)
    if reason is not None:
        # The caller sees only that the address is not allowed: what a name resolves to, and
        # why it is refused, would let a user map internal names. The operator log has both.
        logger.warning(
            "refused outbound connection to %s (%s): %s; add it to HTTP_ALLOWLIST if intended",
            host,
            ip,
            reason,
        )
        raise StepError(ErrorKind.FORBIDDEN_ADDRESS, f"address not allowed: {host}")


def lookup(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal is itself); [] when it does not resolve."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        logger.warning("cannot resolve %r: %s", host, exc)
        return []
    addresses: list[IPAddress] = []
    for *_rest, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def url_destination_problem(url: str, allowlist_text: str) -> str | None:
    """Why outbound HTTP to `url` would be refused under HTTP_ALLOWLIST `allowlist_text`, or
    None when it may go. The message names the host as given, never what it resolves to."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "malformed URL"
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return "must be an absolute http:// or https:// URL"
    allowlist = parse_allowlist(allowlist_text)
    if allowlist.permits_host(host):
        return None
    addresses = lookup(host, port)
    if not addresses:
        return f"{HOST_NOT_FOUND}: {host}"
    try:
        for ip in addresses:
            check_address(host, ip, allowlist)
    except StepError as exc:
        return exc.message
    return None
