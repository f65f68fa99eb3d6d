"""When the local stack restarts a process of its own that exited (pure).

A service that exits is started again after a delay that doubles with each restart in the
recent window (1 s, 2 s, 4 s ... up to `cap_seconds`), so a process that dies at once does not
spin. One that keeps dying, `max_restarts` times within `window_seconds`, is given up on: the
stack stops and says why, as systemd's start limit does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff and give-up limits of the stack's restarts: a service that exits
    `max_restarts` times within `window_seconds` is given up on."""

    base_seconds: float = 1.0
    cap_seconds: float = 30.0
    max_restarts: int = 5
    window_seconds: float = 300.0

    def recent(self, restarts: Sequence[float], now: float) -> int:
        """How many of the `restarts` (monotonic times) fall in the window before `now`."""
        return sum(1 for t in restarts if now - t < self.window_seconds)

    def delay(self, recent: int) -> float | None:
        """Seconds to wait before the next restart after `recent` restarts in the window;
        None: give up."""
        if recent >= self.max_restarts:
            return None
        return float(min(self.cap_seconds, self.base_seconds * 2**recent))
