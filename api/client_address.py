"""Which address a request comes from: the key of every per-address rate limit.

By default it is the connection's peer address, and `X-Forwarded-For` is ignored: anyone can
send that header, so believing it would let a client pick a fresh budget per request. Behind a
reverse proxy or load balancer, name the proxies in TRUSTED_PROXIES (IPs or CIDRs, comma
separated): when the peer is one of them, the header is read from the right (each proxy appends
the address it saw) and the first address that is not a trusted proxy is the client.

uvicorn's own proxy handling is off (`proxy_headers=False` in api.server.SERVER_OPTIONS, which
`supaflow api` uses): uvicorn otherwise rewrites the peer address from the header itself (it
trusts 127.0.0.1 by default), and the peer this module checks would be the header's claim.
Serve the app with SERVER_OPTIONS, or pass `proxy_headers=False` yourself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

from fastapi import Request

from engine.errors import ConfigurationError
from engine.security.networks import IPNetwork, split_networks

#: The key of requests whose peer address is not known (a Unix socket, some test clients).
UNKNOWN = "unknown"


@lru_cache(maxsize=8)
def trusted_networks(spec: str) -> tuple[IPNetwork, ...]:
    """The networks of a TRUSTED_PROXIES value; a malformed entry raises ConfigurationError."""
    networks, others = split_networks(spec)
    if others:
        raise ConfigurationError(
            f"TRUSTED_PROXIES entry {others[0]!r} is not an IP address or CIDR"
        )
    return networks


def _is_trusted(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _normalised(address: str) -> str:
    """One spelling per address (`::FFFF:...`, upper-case IPv6), so it gets one budget."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def forwarded_hops(header_values: Iterable[str]) -> list[str]:
    """The addresses of every `X-Forwarded-For` value, in order (several headers joined)."""
    return [hop.strip() for value in header_values for hop in value.split(",") if hop.strip()]


def resolve_client(peer: str | None, hops: Sequence[str], networks: Sequence[IPNetwork]) -> str:
    """The client address of a request from `peer` carrying `X-Forwarded-For` `hops`.

    An untrusted (or unknown) peer is the client whatever the header says. From a trusted
    peer, the rightmost hop that is not itself a trusted proxy is the client; when every hop
    is trusted, the leftmost one is.
    """
    if peer is None:
        return UNKNOWN
    if not hops or not _is_trusted(peer, networks):
        return _normalised(peer)
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return _normalised(hop)
    return _normalised(hops[0])


def client_ip(request: Request) -> str:
    """The client address of `request`, under the app's TRUSTED_PROXIES (none by default)."""
    settings = getattr(request.app.state, "settings", None)
    networks = trusted_networks(getattr(settings, "trusted_proxies", "") or "")
    peer = request.client.host if request.client else None
    hops = forwarded_hops(request.headers.getlist("x-forwarded-for"))
    return resolve_client(peer, hops, networks)
