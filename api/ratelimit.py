"""Per-endpoint-group rate limits (the `limits` library), in memory or in Redis.

Groups, configured by `RATE_LIMITS` (e.g. "start=60/minute;read=600/minute;anon=30/minute;
operator=10/minute"; a group not named keeps its default):
- "start" (POST /workflows/start) and "read" (GET endpoints): per verified user id, wherever
  the user comes from;
- "anon": per client address, spent only by requests that fail to authenticate (no token, a
  bad token, a user that no longer exists) and by public routes; a request with a valid token
  is never refused by it, so a noisy client cannot lock out the valid users sharing its
  address (NAT, an office, a proxy);
- "operator": per client address, spent by wrong operator tokens; while it is spent every
  operator request from that address is refused, the right token too, so guessing cannot tell
  a hit from a miss.
A moving window is used: no burst at window boundaries. The client address is
`api.client_address.client_ip` (the peer, or X-Forwarded-For from TRUSTED_PROXIES).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import limits
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from engine.errors import ConfigurationError, EngineError
from engine.settings import Settings

logger = logging.getLogger(__name__)

#: Every group a limit may be configured for.
GROUPS = frozenset({"start", "read", "anon", "operator"})
#: Groups keyed by user id (the others are keyed by client address).
PER_USER_GROUPS = frozenset({"start", "read"})
#: The limits used for groups the configuration does not name.
DEFAULT_RATE_LIMITS = str(Settings.model_fields["rate_limits"].default)


class RateLimitedError(EngineError):
    """Too many requests in the group's window; answered with 429 and `Retry-After`."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_seconds: int, limit: int) -> None:
        super().__init__(
            message, details={"retry_after_seconds": retry_after_seconds, "limit": limit}
        )
        self.retry_after_seconds = retry_after_seconds
        self.limit = limit


@dataclass(frozen=True)
class RateLimitResult:
    """What one hit (or peek) found: whether it fits, and when to retry if not."""

    allowed: bool
    retry_after_seconds: int
    limit: int
    remaining: int


def parse_rate_limits(spec: str) -> dict[str, limits.RateLimitItem]:
    """Parse "group=limit;group=limit" into one `RateLimitItem` per group.

    Unknown groups, repeated groups, malformed entries and anything other than exactly one
    limit per group raise `ConfigurationError`, so a typo fails at startup, not silently.
    """
    parsed: dict[str, limits.RateLimitItem] = {}
    for raw in spec.split(";"):
        entry = raw.strip()
        if not entry:
            continue
        group, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not group or not value:
            raise ConfigurationError(f"RATE_LIMITS entry {entry!r} is not 'group=limit'")
        if group not in GROUPS:
            known = ", ".join(sorted(GROUPS))
            raise ConfigurationError(f"RATE_LIMITS names unknown group {group!r} (known: {known})")
        if group in parsed:
            raise ConfigurationError(f"RATE_LIMITS names group {group!r} twice")
        try:
            items = limits.parse_many(value)
        except ValueError:
            raise ConfigurationError(
                f"RATE_LIMITS limit {value!r} for {group!r} is not valid (e.g. '60/minute')"
            ) from None
        if len(items) != 1:
            raise ConfigurationError(f"RATE_LIMITS gives {group!r} more than one limit")
        parsed[group] = items[0]
    return parsed


def effective_rate_limits(spec: str) -> dict[str, limits.RateLimitItem]:
    """The limit of every group: the defaults, overridden by the groups `spec` names."""
    return {**parse_rate_limits(DEFAULT_RATE_LIMITS), **parse_rate_limits(spec)}


def retry_after(reset_time: float, now: float) -> int:
    """Whole seconds until `reset_time` (epoch seconds), at least 1: the `Retry-After` value."""
    return max(1, math.ceil(reset_time - now))


class RateLimiter:
    """Counts hits per (group, key) in a moving window, in memory or in Redis.

    Storage failures (Redis down) let requests through and log a warning: losing the limit for
    a while is better than refusing every caller. `namespace` separates the keys of different
    deployments (or tests) sharing one Redis.
    """

    def __init__(
        self,
        group_limits: Mapping[str, limits.RateLimitItem],
        storage_uri: str = "memory://",
        *,
        namespace: str = "supaflow",
    ) -> None:
        unknown = set(group_limits) - GROUPS
        if unknown:
            raise ConfigurationError(f"unknown rate-limit groups: {sorted(unknown)}")
        self.group_limits = dict(group_limits)
        self.namespace = namespace
        options: dict[str, Any] = {"wrap_exceptions": True}
        if storage_uri.startswith(("redis", "valkey")):
            # A stalled Redis must not stall requests for long.
            options.update(socket_timeout=2.0, socket_connect_timeout=2.0)
        self.storage = storage_from_string(storage_uri, **options)
        self._strategy = MovingWindowRateLimiter(self.storage)

    @classmethod
    def from_settings(cls, settings: Settings, *, namespace: str = "supaflow") -> RateLimiter:
        """The limiter `settings` describe: RATE_LIMITS, and REDIS_URL when set."""
        return cls(
            effective_rate_limits(settings.rate_limits),
            settings.redis_url or "memory://",
            namespace=namespace,
        )

    def _item(self, group: str) -> limits.RateLimitItem:
        try:
            return self.group_limits[group]
        except KeyError:
            raise ValueError(f"no rate limit configured for group {group!r}") from None

    def _result(
        self, item: limits.RateLimitItem, allowed: bool, key: str, group: str
    ) -> RateLimitResult:
        stats = self._strategy.get_window_stats(item, self.namespace, group, key)
        return RateLimitResult(
            allowed=allowed,
            retry_after_seconds=0 if allowed else retry_after(stats.reset_time, time.time()),
            limit=item.amount,
            remaining=max(0, stats.remaining),
        )

    def _ask(self, strategy_call: Callable[..., bool], group: str, key: str) -> RateLimitResult:
        """Ask the strategy about one request; a storage failure lets it through."""
        item = self._item(group)
        try:
            allowed = strategy_call(item, self.namespace, group, key)
            result = self._result(item, allowed, key, group)
        except StorageError as exc:
            logger.warning("rate-limit storage failed, letting the request through: %s", exc)
            return RateLimitResult(True, 0, item.amount, item.amount)
        return result

    def hit(self, group: str, key: str) -> RateLimitResult:
        """Count one request of `key` in `group`; `allowed` is False once the limit is spent."""
        return self._ask(self._strategy.hit, group, key)

    def peek(self, group: str, key: str) -> RateLimitResult:
        """Whether one more request of `key` in `group` would fit, without counting it."""
        return self._ask(self._strategy.test, group, key)

    def check(self, group: str, key: str) -> RateLimitResult:
        """Count one request like `hit`, raising `RateLimitedError` when it does not fit."""
        result = self.hit(group, key)
        raise_if_limited(result)
        return result

    def clear(self, group: str, key: str) -> None:
        """Forget the hits of `key` in `group`."""
        self._strategy.clear(self._item(group), self.namespace, group, key)


def raise_if_limited(result: RateLimitResult) -> None:
    """Raise `RateLimitedError` when `result` does not allow the request."""
    if not result.allowed:
        raise RateLimitedError(
            f"rate limit of {result.limit} requests exceeded; retry in "
            f"{result.retry_after_seconds} s",
            retry_after_seconds=result.retry_after_seconds,
            limit=result.limit,
        )
