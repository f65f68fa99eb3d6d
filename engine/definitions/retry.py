"""Retry policies: precedence, delays and which errors are retried.

The flow turns a step's `RetryPolicy` into Prefect task options: ``retries=max_retries`` and
``retry_delay_seconds=retry_delays(policy)`` with Prefect's own jitter off, so the engine knows
the time of each retry exactly (and can store ``next_retry_at``). Whether a failure is retried
at all is decided by `should_retry` on the failure's `ErrorKind`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import httpx

from engine.definitions.models import RetrySpec
from engine.errors import (
    DEFAULT_RETRY_ON,
    ConfigurationError,
    ErrorKind,
    MappingError,
    StepError,
)

_T = TypeVar("_T")

StrategyName = Literal["fixed", "linear", "exponential"]

DEFAULT_STRATEGY: StrategyName = "exponential"
DEFAULT_INITIAL_DELAY_SECONDS = 1.0
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_MAX_DELAY_SECONDS = 300.0
DEFAULT_JITTER = 0.0
#: The jobs.max_retries column default, used when no level names max_retries.
DEFAULT_JOB_MAX_RETRIES = 3


@dataclass(frozen=True)
class RetryPolicy:
    """A complete retry policy: every field set."""

    max_retries: int
    strategy: StrategyName
    initial_delay_seconds: float
    backoff_factor: float
    max_delay_seconds: float
    jitter: float
    retry_on: frozenset[ErrorKind]


def resolve_policy(
    *,
    step: RetrySpec | None,
    workflow: RetrySpec | None,
    transformer: RetrySpec | None,
    job_max_retries: int = DEFAULT_JOB_MAX_RETRIES,
) -> RetryPolicy:
    """Merge partial specs field by field: step, then workflow, then transformer, then defaults.

    `max_retries` falls back to `job_max_retries` (the job row's column) when no spec sets it.
    """
    specs = [spec for spec in (step, workflow, transformer) if spec is not None]

    def first(getter: Callable[[RetrySpec], _T | None], default: _T) -> _T:
        for spec in specs:
            value = getter(spec)
            if value is not None:
                return value
        return default

    retry_on = first(lambda s: s.retry_on, None)
    return RetryPolicy(
        max_retries=first(lambda s: s.max_retries, job_max_retries),
        strategy=first(lambda s: s.strategy, DEFAULT_STRATEGY),
        initial_delay_seconds=float(
            first(lambda s: s.initial_delay_seconds, DEFAULT_INITIAL_DELAY_SECONDS)
        ),
        backoff_factor=float(first(lambda s: s.backoff_factor, DEFAULT_BACKOFF_FACTOR)),
        max_delay_seconds=float(first(lambda s: s.max_delay_seconds, DEFAULT_MAX_DELAY_SECONDS)),
        jitter=float(first(lambda s: s.jitter, DEFAULT_JITTER)),
        retry_on=frozenset(retry_on) if retry_on is not None else DEFAULT_RETRY_ON,
    )


def base_delay(policy: RetryPolicy, retry_number: int) -> float:
    """Delay in seconds before retry `retry_number` (1-based), before jitter, capped.

    fixed: initial; linear: initial * n; exponential: initial * factor ** (n - 1).
    """
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    initial = policy.initial_delay_seconds
    if policy.strategy == "fixed":
        delay = initial
    elif policy.strategy == "linear":
        delay = initial * retry_number
    else:
        try:
            delay = initial * policy.backoff_factor ** (retry_number - 1)
        except OverflowError:
            # A huge exponent: the cap applies anyway (0 * inf would be nan, so keep 0).
            delay = math.inf if initial > 0 else 0.0
    if math.isnan(delay):
        delay = 0.0
    return min(delay, policy.max_delay_seconds)


def retry_delays(policy: RetryPolicy, rng: random.Random | None = None) -> list[float]:
    """The `max_retries` delays, each jittered by (1 + u), u in [-jitter, +jitter].

    Each is clamped to [0, max_delay_seconds] and rounded to milliseconds.
    """
    source = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not security
    delays: list[float] = []
    for number in range(1, policy.max_retries + 1):
        delay = base_delay(policy, number)
        if policy.jitter > 0:
            delay *= 1 + source.uniform(-policy.jitter, policy.jitter)
        delays.append(round(min(max(delay, 0.0), policy.max_delay_seconds), 3))
    return delays


def should_retry(policy: RetryPolicy, kind: ErrorKind, retries_done: int) -> bool:
    """True when a failure of `kind` is retried after `retries_done` retries already made."""
    return kind in policy.retry_on and retries_done < policy.max_retries


def kind_for_status(status: int) -> ErrorKind | None:
    """The error kind of an HTTP status: None for 1xx-3xx, 408/429 rate limited, 4xx, 5xx."""
    if status in (408, 429):
        return ErrorKind.RATE_LIMITED
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    if status >= 400:
        return ErrorKind.CLIENT_ERROR
    return None


def classify_exception(exc: BaseException) -> ErrorKind:
    """The `ErrorKind` of an exception raised by a step attempt."""
    if isinstance(exc, StepError):
        return exc.kind
    # httpx.TimeoutException is a TransportError, so it is tested first.
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return ErrorKind.TIMEOUT
    if isinstance(exc, (httpx.TransportError, ConnectionError)):
        return ErrorKind.CONNECTION
    if isinstance(exc, httpx.HTTPStatusError):
        return kind_for_status(exc.response.status_code) or ErrorKind.INVALID_RESPONSE
    if isinstance(exc, MappingError):
        return ErrorKind.MAPPING
    if isinstance(exc, ConfigurationError):
        return ErrorKind.CONFIG
    return ErrorKind.INTERNAL


def remaining_retries(
    max_retries: int, delays: tuple[float, ...], first_attempt: int
) -> tuple[int, tuple[float, ...]]:
    """The retries and delays still owed to a step that starts again at `first_attempt`
    (1: a fresh step; n: attempts 1..n-1 already failed, in an earlier flow run)."""
    done = max(first_attempt - 1, 0)
    return max(max_retries - done, 0), delays[done:]
