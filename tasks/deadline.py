"""The step deadline: each step attempt gets its `timeout_seconds`, and the engine keeps it.

Steps run in Prefect's worker threads, where Prefect's own task timeout cannot interrupt a
blocking call (it only raises once the call returns, and warns on every run). So the step task
has no Prefect timeout; instead:
- flows.run_step runs the executor inside `step_deadline(seconds)`;
- the guarded HTTP transport (tasks.http_client) cuts the connect, read, write and pool
  timeouts of every request to the time left, refuses to send once none is left, and stops
  reading a response body once the deadline has passed;
- `bounded_sleep` waits no longer than the time left;
- when the executor returns or raises after the deadline, run_step fails the attempt with
  `Deadline.error()` (kind TIMEOUT), whatever the executor said.
An executor busy in pure Python is not interrupted: its attempt fails as a timeout when it
returns. A blocking call that takes no timeout (a DNS lookup) can also overrun.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import httpx

from engine.errors import ErrorKind, StepError

#: The shortest wait handed to a socket: zero would mean "no timeout" to some of them.
MIN_WAIT_SECONDS = 0.001
#: httpx's four timeouts (the keys of a request's "timeout" extension).
TIMEOUT_KEYS = ("connect", "read", "write", "pool")


@dataclass(frozen=True)
class Deadline:
    """The moment (monotonic clock) a step attempt must be done by, and its timeout."""

    at: float
    seconds: float

    def left(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def passed(self) -> bool:
        """Whether the deadline has passed."""
        return self.left() <= 0

    def error(self) -> StepError:
        """The error an attempt that ran past its deadline fails with."""
        return StepError(ErrorKind.TIMEOUT, f"the step timed out after {self.seconds:g} second(s)")

    def cut(self, timeouts: Mapping[str, float | None]) -> dict[str, float]:
        """httpx timeouts no longer than the time left (a missing or None one becomes it)."""
        left = max(self.left(), MIN_WAIT_SECONDS)
        cut = {key: left for key in TIMEOUT_KEYS}
        for key, value in timeouts.items():
            cut[key] = left if value is None else min(value, left)
        return cut


_CURRENT: ContextVar[Deadline | None] = ContextVar("supaflow_step_deadline", default=None)


def current() -> Deadline | None:
    """The deadline of the step attempt running in this context, if any."""
    return _CURRENT.get()


@contextmanager
def step_deadline(seconds: float) -> Iterator[Deadline]:
    """Run the block as a step attempt that must finish within `seconds`."""
    deadline = Deadline(time.monotonic() + seconds, seconds)
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)


def bounded_sleep(seconds: float) -> None:
    """`time.sleep(seconds)`, but within a step attempt no longer than its time left: when the
    deadline comes first, wait until it and raise its error."""
    deadline = current()
    if deadline is None or seconds < deadline.left():
        time.sleep(seconds)
        return
    time.sleep(max(deadline.left(), 0.0))
    raise deadline.error()


class DeadlineStream(httpx.SyncByteStream):
    """A response body that stops (httpx.ReadTimeout) at the first chunk after the deadline:
    each read is already bounded, but a body trickling in could outlast the step."""

    def __init__(self, inner: httpx.SyncByteStream, deadline: Deadline, request: httpx.Request):
        self._inner = inner
        self._deadline = deadline
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            if self._deadline.passed():
                raise httpx.ReadTimeout("the step's deadline passed", request=self._request)
            yield chunk

    def close(self) -> None:
        """Close the underlying stream (and so release the connection)."""
        self._inner.close()


def bound_request(request: httpx.Request) -> Deadline | None:
    """Within a step attempt, cut `request`'s timeouts to the time left (httpx.ConnectTimeout,
    nothing sent, when none is left); the deadline applied, or None outside a step."""
    deadline = current()
    if deadline is None:
        return None
    if deadline.passed():
        raise httpx.ConnectTimeout("the step's deadline passed", request=request)
    request.extensions["timeout"] = deadline.cut(request.extensions.get("timeout", {}))
    return deadline
