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
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from engine.errors import ErrorKind, StepError

# The address policy lives in engine.security.destinations (the API checks URLs with it too).
from engine.security.destinations import (
    HOST_NOT_FOUND,
    Allowlist,
    IPAddress,
    check_address,
    embedded_ipv4,
    forbidden_reason,
    logger,
    parse_allowlist,
)
from engine.settings import Settings
from tasks.deadline import DeadlineStream, bound_request

__all__ = [
    "HOST_NOT_FOUND",
    "USER_AGENT",
    "Allowlist",
    "GuardedBackend",
    "GuardedTransport",
    "check_address",
    "embedded_ipv4",
    "forbidden_reason",
    "make_client",
    "parse_allowlist",
    "resolve",
]

USER_AGENT = "supaflow/0.1"


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
