"""When the rate limiter trusts its shared storage again after a failure: a circuit breaker.

Pure logic, no I/O and no clock of its own: every call is given `now` (monotonic seconds), so
the state machine is tested with a table of cases (tests/unit/test_rate_limit_breaker.py) and
`api.ratelimit.RateLimiter` does the storage calls and the locking around it.

- **shared**: every request asks the shared storage (Redis).
- A storage failure switches to **local** for `cool_down_seconds`: requests are limited by the
  process's own memory and do not touch the shared storage at all.
- Once the cool-down is over, the next request is the **probe**: it alone asks the shared
  storage (the others stay local meanwhile). Its success switches back to shared; its failure
  starts a new cool-down. A probe that never reports (its thread died) is given up after one
  cool-down, and the next request probes.

So while the shared storage is down, at most one request per cool-down waits on it.
"""

from __future__ import annotations

from enum import Enum


class Route(Enum):
    """Which storage one request asks."""

    SHARED = "shared"  # the shared storage, all is well
    PROBE = "probe"  # the shared storage, the one try after a cool-down
    LOCAL = "local"  # this process's memory, while the shared storage is not trusted


class FallbackBreaker:
    """The shared-or-local state of one limiter, and counts of what it chose.

    `shared_attempts` counts the requests sent to the shared storage (each SHARED or PROBE
    answer of `choose`), `fallbacks` the switches from shared to local.
    """

    def __init__(self, cool_down_seconds: float) -> None:
        if not cool_down_seconds > 0:
            raise ValueError(f"cool_down_seconds must be > 0, not {cool_down_seconds!r}")
        self.cool_down_seconds = cool_down_seconds
        self.shared_attempts = 0
        self.fallbacks = 0
        self._fallback_since: float | None = None
        self._retry_at: float | None = None
        self._probe_started: float | None = None

    @property
    def falling_back(self) -> bool:
        """True from a failure of the shared storage until a probe succeeds."""
        return self._retry_at is not None

    @property
    def fallback_since(self) -> float | None:
        """The `now` of the failure that started the current fallback, or None."""
        return self._fallback_since

    def choose(self, now: float) -> Route:
        """The storage the request arriving at `now` asks; SHARED and PROBE count an attempt."""
        if self._retry_at is None:
            self.shared_attempts += 1
            return Route.SHARED
        if now < self._retry_at:
            return Route.LOCAL
        probe = self._probe_started
        if probe is not None and now - probe < self.cool_down_seconds:
            return Route.LOCAL  # another request is probing
        self._probe_started = now
        self.shared_attempts += 1
        return Route.PROBE

    def failed(self, now: float) -> bool:
        """Record that the shared storage failed at `now`; True when this switched to local.

        Every failure (a probe's, or one of several requests in flight when the storage
        went down) restarts the cool-down from `now`; only the first one switches.
        """
        switched = self._retry_at is None
        if switched:
            self.fallbacks += 1
            self._fallback_since = now
        self._retry_at = now + self.cool_down_seconds
        self._probe_started = None
        return switched

    def succeeded(self, route: Route) -> bool:
        """Record that a request sent by `route` got its answer from the shared storage; True
        when this switched back to shared.

        Only a probe's success ends a fallback: a SHARED request that started before the
        failure and finished after it says nothing about the storage now.
        """
        if route is not Route.PROBE or self._retry_at is None:
            return False
        self._retry_at = None
        self._probe_started = None
        self._fallback_since = None
        return True
