"""Unit tests of retry policies (engine.definitions.retry)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import httpx
import pytest

from engine.definitions.models import RetrySpec
from engine.definitions.retry import (
    RetryPolicy,
    base_delay,
    classify_exception,
    kind_for_status,
    remaining_retries,
    resolve_policy,
    retry_delays,
    should_retry,
)
from engine.errors import (
    DEFAULT_RETRY_ON,
    ConfigurationError,
    DefinitionError,
    ErrorKind,
    MappingError,
    StepError,
)


def policy(**overrides: Any) -> RetryPolicy:
    """A policy with the built-in defaults and 5 retries, with some fields replaced."""
    fields: dict[str, Any] = {
        "max_retries": 5,
        "strategy": "exponential",
        "initial_delay_seconds": 1.0,
        "backoff_factor": 2.0,
        "max_delay_seconds": 300.0,
        "jitter": 0.0,
        "retry_on": DEFAULT_RETRY_ON,
    }
    fields.update(overrides)
    return RetryPolicy(**fields)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"strategy": "fixed", "initial_delay_seconds": 3}, [3, 3, 3, 3, 3], id="fixed"
        ),
        pytest.param(
            {"strategy": "linear", "initial_delay_seconds": 2}, [2, 4, 6, 8, 10], id="linear"
        ),
        pytest.param({}, [1, 2, 4, 8, 16], id="exponential"),
        pytest.param(
            {"backoff_factor": 3, "initial_delay_seconds": 0.5},
            [0.5, 1.5, 4.5, 13.5, 40.5],
            id="exp-factor-3",
        ),
        pytest.param({"max_delay_seconds": 5}, [1, 2, 4, 5, 5], id="exponential-capped"),
        pytest.param(
            {"strategy": "linear", "initial_delay_seconds": 10, "max_delay_seconds": 25},
            [10, 20, 25, 25, 25],
            id="linear-capped",
        ),
        pytest.param(
            {"strategy": "fixed", "initial_delay_seconds": 10, "max_delay_seconds": 4},
            [4, 4, 4, 4, 4],
            id="fixed-capped",
        ),
        pytest.param({"initial_delay_seconds": 0}, [0, 0, 0, 0, 0], id="zero"),
        pytest.param({"max_retries": 0}, [], id="no-retries"),
        pytest.param(
            {"initial_delay_seconds": 1 / 3, "strategy": "fixed"}, [0.333] * 5, id="ms-rounding"
        ),
    ],
)
def test_retry_delays_per_strategy(overrides: dict[str, Any], expected: list[float]) -> None:
    """Without jitter the delays follow the strategy exactly and never exceed the cap."""
    assert retry_delays(policy(**overrides)) == expected


@pytest.mark.parametrize("strategy", ["exponential", "linear"])
def test_base_delay_huge_retry_number_is_capped(strategy: str) -> None:
    """A very large retry number cannot overflow; the cap applies."""
    p = policy(strategy=strategy, backoff_factor=10, max_delay_seconds=86400)
    assert base_delay(p, 1_000_000) == 86400
    assert base_delay(dataclasses.replace(p, initial_delay_seconds=0.0), 1_000_000) == 0


def test_base_delay_rejects_retry_zero() -> None:
    """Retry numbers are 1-based."""
    with pytest.raises(ValueError, match="starts at 1"):
        base_delay(policy(), 0)


@pytest.mark.parametrize("seed", [0, 1, 2, 42])
@pytest.mark.parametrize("jitter", [0.1, 0.5, 1.0])
def test_jitter_stays_within_bounds(seed: int, jitter: float) -> None:
    """Each jittered delay lies within base * (1 ± jitter), clamped to [0, cap]."""
    p = policy(max_retries=12, jitter=jitter, max_delay_seconds=100)
    delays = retry_delays(p, random.Random(seed))
    assert len(delays) == 12
    for number, delay in enumerate(delays, start=1):
        base = base_delay(p, number)
        assert (
            max(0.0, base * (1 - jitter)) - 0.001 <= delay <= min(100, base * (1 + jitter)) + 0.001
        )
        assert delay == round(delay, 3)


def test_jitter_is_reproducible_with_seeded_rng() -> None:
    """The same seed gives the same delays; jitter actually changes them."""
    p = policy(jitter=0.3)
    assert retry_delays(p, random.Random(7)) == retry_delays(p, random.Random(7))
    assert retry_delays(p, random.Random(7)) != retry_delays(policy())


S = RetrySpec


@pytest.mark.parametrize(
    ("step", "workflow", "transformer", "job_max", "expected"),
    [
        pytest.param(
            None,
            None,
            None,
            3,
            policy(max_retries=3),
            id="defaults",
        ),
        pytest.param(None, None, None, 7, policy(max_retries=7), id="job-column-max-retries"),
        pytest.param(
            S(max_retries=5),
            S(max_retries=2),
            S(max_retries=1),
            3,
            policy(max_retries=5),
            id="step-wins",
        ),
        pytest.param(
            None,
            S(max_retries=2),
            S(max_retries=1),
            3,
            policy(max_retries=2),
            id="workflow-over-transformer",
        ),
        pytest.param(
            None, None, S(max_retries=1), 3, policy(max_retries=1), id="transformer-over-job"
        ),
        pytest.param(
            S(strategy="fixed"),
            S(initial_delay_seconds=2, strategy="linear", jitter=0.2),
            S(max_delay_seconds=60, initial_delay_seconds=9, retry_on=[ErrorKind.CLIENT_ERROR]),
            4,
            policy(
                max_retries=4,
                strategy="fixed",
                initial_delay_seconds=2.0,
                max_delay_seconds=60.0,
                jitter=0.2,
                retry_on=frozenset({ErrorKind.CLIENT_ERROR}),
            ),
            id="per-field-merge",
        ),
        pytest.param(
            S(retry_on=[]),
            None,
            None,
            3,
            policy(max_retries=3, retry_on=frozenset()),
            id="empty-retry-on",
        ),
        pytest.param(S(max_retries=0), None, None, 3, policy(max_retries=0), id="zero-is-set"),
    ],
)
def test_resolve_policy_precedence(
    step: RetrySpec | None,
    workflow: RetrySpec | None,
    transformer: RetrySpec | None,
    job_max: int,
    expected: RetryPolicy,
) -> None:
    """Each field comes from step, then workflow, then transformer, then the default."""
    resolved = resolve_policy(
        step=step, workflow=workflow, transformer=transformer, job_max_retries=job_max
    )
    assert resolved == expected


@pytest.mark.parametrize(
    ("kind", "retries_done", "expected"),
    [
        (ErrorKind.SERVER_ERROR, 0, True),
        (ErrorKind.RATE_LIMITED, 2, True),
        (ErrorKind.TIMEOUT, 3, False),  # budget used up
        (ErrorKind.CLIENT_ERROR, 0, False),  # not in retry_on
        (ErrorKind.MAPPING, 0, False),
    ],
)
def test_should_retry(kind: ErrorKind, retries_done: int, expected: bool) -> None:
    """Retry only kinds in retry_on, and only while retries remain."""
    assert should_retry(policy(max_retries=3), kind, retries_done) is expected


def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/")
    return httpx.HTTPStatusError(
        "bad", request=request, response=httpx.Response(status, request=request)
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (StepError(ErrorKind.CONTENT_BLOCKED, "blocked"), ErrorKind.CONTENT_BLOCKED),
        (TimeoutError(), ErrorKind.TIMEOUT),
        (httpx.ReadTimeout("slow"), ErrorKind.TIMEOUT),
        (httpx.ConnectTimeout("slow"), ErrorKind.TIMEOUT),
        (httpx.ConnectError("refused"), ErrorKind.CONNECTION),
        (httpx.RemoteProtocolError("eof"), ErrorKind.CONNECTION),
        (ConnectionResetError(), ErrorKind.CONNECTION),
        (_status_error(408), ErrorKind.RATE_LIMITED),
        (_status_error(429), ErrorKind.RATE_LIMITED),
        (_status_error(500), ErrorKind.SERVER_ERROR),
        (_status_error(503), ErrorKind.SERVER_ERROR),
        (_status_error(400), ErrorKind.CLIENT_ERROR),
        (_status_error(404), ErrorKind.CLIENT_ERROR),
        (MappingError("missing"), ErrorKind.MAPPING),
        (ConfigurationError("no key"), ErrorKind.CONFIG),
        (DefinitionError("bad", []), ErrorKind.INTERNAL),
        (ValueError("x"), ErrorKind.INTERNAL),
        (KeyError("x"), ErrorKind.INTERNAL),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_classify_exception(exc: BaseException, kind: ErrorKind) -> None:
    """Exceptions map to error kinds; 429/503 are retryable kinds, 400 is not."""
    assert classify_exception(exc) is kind


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, None),
        (204, None),
        (302, None),
        (400, ErrorKind.CLIENT_ERROR),
        (401, ErrorKind.CLIENT_ERROR),
        (408, ErrorKind.RATE_LIMITED),
        (429, ErrorKind.RATE_LIMITED),
        (500, ErrorKind.SERVER_ERROR),
        (502, ErrorKind.SERVER_ERROR),
        (599, ErrorKind.SERVER_ERROR),
    ],
)
def test_kind_for_status(status: int, kind: ErrorKind | None) -> None:
    """HTTP statuses map to kinds; success and redirects have none."""
    assert kind_for_status(status) is kind


def test_default_retry_on_retries_429_and_503_not_400() -> None:
    """The default policy retries rate limiting and server errors but not client errors."""
    p = resolve_policy(step=None, workflow=None, transformer=None, job_max_retries=3)
    assert should_retry(p, classify_exception(_status_error(429)), 0)
    assert should_retry(p, classify_exception(_status_error(503)), 0)
    assert not should_retry(p, classify_exception(_status_error(400)), 0)


@pytest.mark.parametrize(
    ("max_retries", "delays", "first_attempt", "expected"),
    [
        (3, (1.0, 2.0, 4.0), 1, (3, (1.0, 2.0, 4.0))),  # a fresh step: everything owed
        (3, (1.0, 2.0, 4.0), 2, (2, (2.0, 4.0))),  # attempt 1 failed in an earlier run
        (3, (1.0, 2.0, 4.0), 4, (0, ())),  # the last attempt: no retry left
        (3, (1.0, 2.0, 4.0), 9, (0, ())),  # past the policy: never negative
        (0, (), 1, (0, ())),
        (2, (60.0, 60.0), 0, (2, (60.0, 60.0))),  # 0 reads as a fresh step
    ],
)
def test_remaining_retries_continue_where_an_earlier_flow_run_stopped(
    max_retries: int,
    delays: tuple[float, ...],
    first_attempt: int,
    expected: tuple[int, tuple[float, ...]],
) -> None:
    """A step resumed at attempt n keeps the retries and delays its policy still owes."""
    assert remaining_retries(max_retries, delays, first_attempt) == expected
