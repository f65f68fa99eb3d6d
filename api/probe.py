"""The health probe's answer, shared by every caller for a second.

GET /health is not rate limited: a load balancer's probe must never be refused because of its
own frequency or of a noisy client behind the same address. What it checks (a database round
trip and Prefect's health endpoint) is therefore done at most once per `max_age_seconds` per
process, whatever the rate of probes: one caller refreshes the answer while the others answer
from the previous one, so a flood of probes cannot load the database or Prefect, and a slow
check never ties up more than one thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: How long one health answer is reused.
HEALTH_MAX_AGE_SECONDS = 1.0


@dataclass(frozen=True)
class Reachability:
    """What the health probe found."""

    database: bool
    prefect: bool


class ProbeCache:
    """The last `Reachability`, refreshed by one caller at a time once it is `max_age` old."""

    def __init__(
        self,
        max_age_seconds: float = HEALTH_MAX_AGE_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age_seconds
        self._clock = clock
        self._refresh = threading.Lock()
        self._last: tuple[float, Reachability] | None = None

    def get(self, check: Callable[[], Reachability]) -> Reachability:
        """A fresh enough answer: the cached one, or `check()` run by this caller.

        While another caller is refreshing, the previous answer is returned at once; only the
        very first callers (no answer yet) wait for the refresh.
        """
        last = self._last
        if last is not None and self._clock() - last[0] < self._max_age:
            return last[1]
        if not self._refresh.acquire(blocking=last is None):
            assert last is not None
            return last[1]
        try:
            current = self._last
            if current is not None and current is not last:
                return current[1]  # refreshed by the caller this one waited for
            result = check()
            self._last = (self._clock(), result)
            return result
        finally:
            self._refresh.release()
