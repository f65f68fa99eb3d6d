"""The one factory for outbound HTTP, guarded against server-side request forgery.

Every executor that talks HTTP gets its client from `make_client`. The client's transport
resolves each destination host itself, refuses addresses that are not globally routable
(loopback, private, link-local, multicast, reserved, unspecified, shared/CGNAT, and those
hidden in IPv4-mapped, 6to4 and NAT64 IPv6 forms) unless `HTTP_ALLOWLIST` permits them, and
then connects to the very address it checked. Because the check sits where sockets are
opened, it covers every request and every redirect hop, and a DNS answer that changes between
check and connect (DNS rebinding) cannot slip through: the name is resolved exactly once per
connection. TLS still verifies the certificate against the host name (SNI is the name, not
the address).

Residual risks, by design: a pooled keep-alive connection is reused for later requests to
the same scheme/host/port without a new lookup (it was checked when opened); environment
proxies are ignored (`trust_env=False`), so an operator who needs an egress proxy must add one
here deliberately.

Within a step attempt every request also keeps to the step's deadline (tasks/deadline.py).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpcore
import httpx

from engine.errors import ErrorKind, StepError
from engine.security.networks import IPNetwork, split_networks
from engine.settings import Settings
from tasks.deadline import DeadlineStream, bound_request

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

USER_AGENT = "supaflow/0.1"
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


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        # The resolver's own words stay in the operator log (see check_address).
        logger.warning("cannot resolve %r: %s", host, exc)
        raise httpcore.ConnectError(HOST_NOT_FOUND) from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        # Drop an IPv6 zone ("fe80::1%eth0"); link-local is refused anyway.
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        logger.warning("%r resolved to no address", host)
        raise httpcore.ConnectError(HOST_NOT_FOUND)
    return addresses


# ---------------------------------------------------------------------------------------------
# Transport
# ---------------------------------------------------------------------------------------------


class GuardedBackend(httpcore.SyncBackend):
    """A network backend that checks every destination before opening the socket."""

    def __init__(self, allowlist: Allowlist) -> None:
        self._allowlist = allowlist

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Resolve `host`, refuse it if any address is forbidden, connect to a checked one."""
        addresses = resolve(host, port)
        # Every address must pass: a name answering with one public and one private address
        # would otherwise reach the private one on a retry or failover.
        for ip in addresses:
            check_address(host, ip, self._allowlist)
        last_error: Exception | None = None
        for ip in addresses:
            try:
                return super().connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error


class GuardedTransport(httpx.HTTPTransport):
    """httpx transport whose connection pool uses `GuardedBackend`."""

    def __init__(self, allowlist: Allowlist, *, limits: httpx.Limits | None = None) -> None:
        super().__init__(trust_env=False)
        limits = limits or httpx.Limits(max_connections=20, max_keepalive_connections=5)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allowlist),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Refuse anything but http(s) before touching the network; within a step attempt,
        keep the request and its body within the step's deadline (tasks/deadline.py)."""
        if request.url.scheme not in ("http", "https"):
            raise StepError(
                ErrorKind.CLIENT_ERROR,
                f"only http and https URLs are allowed, not {request.url.scheme!r}",
            )
        deadline = bound_request(request)
        response = super().handle_request(request)
        if deadline is not None and isinstance(response.stream, httpx.SyncByteStream):
            response.stream = DeadlineStream(response.stream, deadline, request)
        return response


def make_client(
    settings: Settings,
    *,
    timeout: float,
    follow_redirects: bool = True,
    max_redirects: int = 5,
    allow_hosts: Iterable[str] = (),
) -> httpx.Client:
    """An httpx client for outbound calls, guarded by the SSRF policy.

    `allow_hosts` adds trusted host names for this client only (e.g. the operator-configured
    SUPABASE_URL); user-supplied URLs must never be passed here.
    """
    extra = ",".join(h for h in allow_hosts if h)
    allowlist = parse_allowlist(f"{settings.http_allowlist},{extra}")
    return httpx.Client(
        transport=GuardedTransport(allowlist),
        timeout=httpx.Timeout(timeout),
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )
