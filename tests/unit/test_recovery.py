"""Maintenance decisions for in-flight jobs whose flow run may be gone."""

from __future__ import annotations

import pytest

from engine.jobs.recovery import Action, Candidate, backoff_seconds, decide


def _candidate(**overrides: object) -> Candidate:
    base: dict[str, object] = {
        "job_id": "j",
        "status": "running",
        "flow_run_found": True,
        "flow_run_state": "RUNNING",
        "heartbeat_age_seconds": 1.0,
        "resubmissions": 0,
        "max_retries": 3,
    }
    base.update(overrides)
    return Candidate(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "action", "reason_part"),
    [
        ({}, Action.LEAVE, "alive"),
        ({"flow_run_state": "SCHEDULED"}, Action.LEAVE, "SCHEDULED"),
        ({"flow_run_state": "PAUSED", "heartbeat_age_seconds": 999.0}, Action.LEAVE, "PAUSED"),
        ({"flow_run_state": "PENDING", "heartbeat_age_seconds": 5.0}, Action.LEAVE, "alive"),
        # Claimed by a worker that died before starting it.
        ({"flow_run_state": "PENDING", "heartbeat_age_seconds": 999.0}, Action.RESUBMIT, "no sign"),
        ({"flow_run_state": None}, Action.LEAVE, "unknown"),
        ({"flow_run_state": "CRASHED"}, Action.RESUBMIT, "CRASHED"),
        ({"flow_run_state": "CANCELLED"}, Action.RESUBMIT, "CANCELLED"),
        ({"flow_run_state": "FAILED"}, Action.RESUBMIT, "FAILED"),
        ({"flow_run_found": False, "flow_run_state": None}, Action.RESUBMIT, "lost"),
        ({"heartbeat_age_seconds": 61.0}, Action.RESUBMIT, "no sign of life"),
        ({"heartbeat_age_seconds": 59.0}, Action.LEAVE, "alive"),
        ({"heartbeat_age_seconds": None}, Action.LEAVE, "alive"),
        ({"flow_run_state": "CRASHED", "resubmissions": 3}, Action.GIVE_UP, "max_retries is 3"),
        ({"flow_run_state": "CRASHED", "resubmissions": 2}, Action.RESUBMIT, "CRASHED"),
        ({"flow_run_state": "CRASHED", "max_retries": 0}, Action.GIVE_UP, "max_retries is 0"),
    ],
)
def test_decisions(overrides: dict[str, object], action: Action, reason_part: str) -> None:
    """Crashed, cancelled, lost or silent runs are resubmitted until max_retries, then failed;
    live or not-yet-started runs are left alone."""
    decision = decide(_candidate(**overrides), heartbeat_window_seconds=60)
    assert decision.action is action
    assert reason_part in decision.reason


@pytest.mark.parametrize(
    ("n", "expected"), [(0, 5.0), (1, 10.0), (2, 20.0), (6, 300.0), (100, 300.0)]
)
def test_resubmission_backoff_doubles_and_caps(n: int, expected: float) -> None:
    """Job-level resubmissions back off exponentially, capped."""
    assert backoff_seconds(n, base=5, cap=300) == expected


def test_resubmit_decision_carries_the_backoff() -> None:
    """The second resubmission waits twice as long as the first."""
    first = decide(_candidate(flow_run_state="CRASHED"), heartbeat_window_seconds=60)
    second = decide(
        _candidate(flow_run_state="CRASHED", resubmissions=1), heartbeat_window_seconds=60
    )
    assert second.delay_seconds == 2 * first.delay_seconds
