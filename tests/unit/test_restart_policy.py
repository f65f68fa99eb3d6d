"""The local stack's restart policy: doubling delays, a cap, and a limit per window."""

from __future__ import annotations

import pytest

from cli.restart_policy import RestartPolicy


@pytest.mark.parametrize(
    ("recent", "delay"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, None), (9, None)],
)
def test_delay_doubles_until_the_limit(recent: int, delay: float | None) -> None:
    """1 s, then doubling; after max_restarts (5) in the window, no more restarts."""
    assert RestartPolicy().delay(recent) == delay


@pytest.mark.parametrize(("recent", "delay"), [(0, 10.0), (1, 20.0), (2, 25.0), (8, 25.0)])
def test_delay_is_capped(recent: int, delay: float) -> None:
    """No delay exceeds cap_seconds, however many restarts came before."""
    policy = RestartPolicy(base_seconds=10, cap_seconds=25, max_restarts=100)
    assert policy.delay(recent) == delay


@pytest.mark.parametrize(
    ("restarts", "now", "recent"),
    [
        ((), 1000.0, 0),
        ((999.0,), 1000.0, 1),
        ((600.0, 750.0, 999.0), 1000.0, 2),  # 600 is 400 s old: outside the 300 s
        ((700.0,), 1000.0, 0),  # exactly at the window's edge: outside
        ((700.1, 800.0, 900.0), 1000.0, 3),
    ],
)
def test_only_restarts_inside_the_window_count(
    restarts: tuple[float, ...], now: float, recent: int
) -> None:
    """A service that stayed up for the window starts again from the first delay."""
    assert RestartPolicy().recent(restarts, now) == recent
