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

Scope. With REDIS_URL the counts are shared by every API replica ("shared"). Without it they
live in the process's memory ("local"): each replica counts its own requests, so N replicas
let up to N times a limit through. When the shared storage fails, the limiter does not let
everything through: it falls back to local counting with the same limits (each replica again
counting its own) for RATE_LIMIT_FALLBACK_SECONDS, then one request probes the shared storage
again (api/ratelimit_breaker.py). While Redis is down at most one request per cool-down waits
on it. Every limited answer says which scope counted it in `X-RateLimit-Scope`
(`RateLimitScopeMiddleware`), and GET /health and /metrics report the fallback.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import limits
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ratelimit_breaker import FallbackBreaker, Route
from engine.errors import ConfigurationError, EngineError
from engine.settings import Settings

logger = logging.getLogger(__name__)

#: Every group a limit may be configured for.
GROUPS = frozenset({"start", "read", "anon", "operator"})
#: Groups keyed by user id (the others are keyed by client address).
PER_USER_GROUPS = frozenset({"start", "read"})
#: The limits used for groups the configuration does not name.
DEFAULT_RATE_LIMITS = str(Settings.model_fields["rate_limits"].default)
#: The header of every answer a limit was applied to: which counts it ("shared" or "local").
SCOPE_HEADER = "X-RateLimit-Scope"
#: Where a request's scope is kept (`request.state`) between its dependency and its answer.
SCOPE_STATE_KEY = "rate_limit_scope"

#: The cool-down when no setting is given (RATE_LIMIT_FALLBACK_SECONDS).
DEFAULT_FALLBACK_SECONDS = float(Settings.model_fields["rate_limit_fallback_seconds"].default)

LimitScope = Literal["shared", "local"]
Action = Literal["hit", "test"]


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
    scope: LimitScope


@dataclass(frozen=True)
class RateLimitStatus:
    """How the limiter counts now: the configured storage, the scope of its counts, and since
    when (UTC) it has been falling back to local counts."""

    storage: Literal["redis", "memory"]
    scope: LimitScope
    fallback_since: datetime | None
    fallbacks: int


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

    With Redis, a storage failure does not lift the limits: the limiter counts in this
    process's memory, with the same limits, until a probe after `fallback_seconds` finds Redis
    answering again (module docstring). `namespace` separates the keys of different
    deployments (or tests) sharing one Redis. `breaker` (None without Redis) is the
    shared-or-local state; its counts say how often Redis was asked.
    """

    def __init__(
        self,
        group_limits: Mapping[str, limits.RateLimitItem],
        storage_uri: str = "memory://",
        *,
        namespace: str = "supaflow",
        fallback_seconds: float = DEFAULT_FALLBACK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        unknown = set(group_limits) - GROUPS
        if unknown:
            raise ConfigurationError(f"unknown rate-limit groups: {sorted(unknown)}")
        self.group_limits = dict(group_limits)
        self.namespace = namespace
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        self.breaker: FallbackBreaker | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._fallback_since: datetime | None = None
        if storage_uri.startswith("memory://"):
            return
        if not storage_uri.startswith(("redis", "valkey")):
            # The URI is not repeated: it may hold a password.
            raise ConfigurationError("REDIS_URL must be a redis://, rediss:// or valkey:// URL")
        # Redis is meant to be near the API (same host or network), where a connection is made
        # in well under 0.5 s or not at all; this bounds the wait of the one request per
        # cool-down that finds it down. A command on an open connection keeps 2 s: a loaded
        # but working Redis must not be taken for a dead one.
        self._shared = MovingWindowRateLimiter(
            storage_from_string(
                storage_uri, wrap_exceptions=True, socket_timeout=2.0, socket_connect_timeout=0.5
            )
        )
        self.breaker = FallbackBreaker(fallback_seconds)

    @classmethod
    def from_settings(cls, settings: Settings, *, namespace: str = "supaflow") -> RateLimiter:
        """The limiter `settings` describe: RATE_LIMITS, REDIS_URL when set, and
        RATE_LIMIT_FALLBACK_SECONDS."""
        return cls(
            effective_rate_limits(settings.rate_limits),
            settings.redis_url or "memory://",
            namespace=namespace,
            fallback_seconds=settings.rate_limit_fallback_seconds,
        )

    def _item(self, group: str) -> limits.RateLimitItem:
        try:
            return self.group_limits[group]
        except KeyError:
            raise ValueError(f"no rate limit configured for group {group!r}") from None

    def _count(
        self, strategy: MovingWindowRateLimiter, action: Action, group: str, key: str
    ) -> RateLimitResult:
        """Ask one storage about one request (`hit` counts it, `test` does not)."""
        item = self._item(group)
        call = strategy.hit if action == "hit" else strategy.test
        allowed = call(item, self.namespace, group, key)
        stats = strategy.get_window_stats(item, self.namespace, group, key)
        return RateLimitResult(
            allowed=allowed,
            retry_after_seconds=0 if allowed else retry_after(stats.reset_time, time.time()),
            limit=item.amount,
            remaining=max(0, stats.remaining),
            scope="shared" if strategy is self._shared else "local",
        )

    def _ask(self, action: Action, group: str, key: str) -> RateLimitResult:
        """Count in Redis while the breaker trusts it, else (and when it fails) locally."""
        self._item(group)
        if self._shared is None or self.breaker is None:
            return self._count(self._local, action, group, key)
        with self._lock:
            route = self.breaker.choose(self._clock())
        if route is not Route.LOCAL:
            try:
                result = self._count(self._shared, action, group, key)
            except StorageError as exc:
                self._shared_failed(exc)
            else:
                self._shared_answered(route)
                return result
        return self._count(self._local, action, group, key)

    def _shared_failed(self, exc: StorageError) -> None:
        assert self.breaker is not None
        with self._lock:
            switched = self.breaker.failed(self._clock())
            if switched:
                self._fallback_since = datetime.now(UTC)
        if switched:
            # The error names the host and port at most, never the URL with its password.
            cause = exc.storage_error
            logger.warning(
                "rate-limit storage (Redis) failed (%s: %s): limiting in this process only, "
                "trying Redis again in %s s",
                type(cause).__name__,
                cause,
                self.breaker.cool_down_seconds,
            )

    def _shared_answered(self, route: Route) -> None:
        assert self.breaker is not None
        with self._lock:
            switched = self.breaker.succeeded(route)
            if switched:
                self._fallback_since = None
        if switched:
            logger.info("rate-limit storage (Redis) answers again: limits are shared again")

    def hit(self, group: str, key: str) -> RateLimitResult:
        """Count one request of `key` in `group`; `allowed` is False once the limit is spent."""
        return self._ask("hit", group, key)

    def peek(self, group: str, key: str) -> RateLimitResult:
        """Whether one more request of `key` in `group` would fit, without counting it."""
        return self._ask("test", group, key)

    def check(self, group: str, key: str) -> RateLimitResult:
        """Count one request like `hit`, raising `RateLimitedError` when it does not fit."""
        result = self.hit(group, key)
        raise_if_limited(result)
        return result

    def clear(self, group: str, key: str) -> None:
        """Forget the hits of `key` in `group`, locally and in Redis."""
        item = self._item(group)
        self._local.clear(item, self.namespace, group, key)
        if self._shared is not None:
            self._shared.clear(item, self.namespace, group, key)

    def status(self) -> RateLimitStatus:
        """How the limiter counts now (GET /health, /metrics)."""
        if self.breaker is None:
            return RateLimitStatus("memory", "local", None, 0)
        with self._lock:
            falling_back, since = self.breaker.falling_back, self._fallback_since
            fallbacks = self.breaker.fallbacks
        return RateLimitStatus("redis", "local" if falling_back else "shared", since, fallbacks)


def raise_if_limited(result: RateLimitResult) -> None:
    """Raise `RateLimitedError` when `result` does not allow the request."""
    if not result.allowed:
        raise RateLimitedError(
            f"rate limit of {result.limit} requests exceeded; retry in "
            f"{result.retry_after_seconds} s",
            retry_after_seconds=result.retry_after_seconds,
            limit=result.limit,
        )


class RateLimitScopeMiddleware:
    """Add `X-RateLimit-Scope` to the answer of every request a limit was applied to.

    The rate-limit dependencies (api/deps.py `apply_limit`) keep the scope of the count in
    the request's state; this one place turns it into the header of whatever the answer is:
    the route's, a 429, or the 401 of a failed authentication.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, adding the header to its answer when a limit was applied."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The request's state is this dict (starlette's Request.state), set up before the app
        # runs so the dependencies write into the one read here.
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_scope(message: Message) -> None:
            if message["type"] == "http.response.start":
                limit_scope = state.get(SCOPE_STATE_KEY)
                if limit_scope is not None:
                    MutableHeaders(scope=message)[SCOPE_HEADER] = str(limit_scope)
            await send(message)

        await self.app(scope, receive, send_with_scope)
