"""What a cancel does to a job (engine.jobs.control), what maintenance does with a job whose
cancel its run will not see (engine.jobs.recovery), and the error kind the API shows."""

from __future__ import annotations

import pytest

from engine.jobs.control import CancelAction, CancelTarget, cancel_action, error_kind
from engine.jobs.recovery import Action, Candidate, decide
from engine.jobs.transitions import JobStatus as S

A = CancelAction


@pytest.mark.parametrize(
    ("status", "waiting", "rescheduled", "requested", "action"),
    [
        (S.PENDING, False, False, False, A.FAIL_NOW),  # no step started
        (S.RUNNING, True, False, False, A.FAIL_NOW),  # the flow run ended at a wait
        (S.AWAITING_RETRY, False, True, False, A.FAIL_NOW),  # the run ended, Scheduled
        (S.AWAITING_RETRY, False, False, False, A.REQUEST),  # backoff slept in the live run
        (S.RUNNING, False, False, False, A.REQUEST),  # a step is running
        (S.RUNNING, False, False, True, A.ALREADY_REQUESTED),  # asked twice: no change
        (S.AWAITING_RETRY, False, False, True, A.ALREADY_REQUESTED),
        (S.COMPLETED, False, False, False, A.FINISHED),
        (S.FAILED, False, False, True, A.FINISHED),  # cancelled already
        (S.FAILED, False, False, False, A.FINISHED),
    ],
)
def test_cancel_action(
    status: S, waiting: bool, rescheduled: bool, requested: bool, action: CancelAction
) -> None:
    """A job with no live step is failed at once, a live one is asked to stop at its next
    step boundary, a second ask changes nothing, and a finished job cannot be cancelled."""
    target = CancelTarget(
        status=status, waiting=waiting, retry_rescheduled=rescheduled, cancel_requested=requested
    )
    assert cancel_action(target) is action


def candidate(
    state: str | None, *, found: bool = True, age: float = 1.0, cancel: bool = True
) -> Candidate:
    """A running job whose flow run is in `state`, silent for `age` seconds."""
    return Candidate(
        job_id="j",
        status="running",
        flow_run_found=found,
        flow_run_state=state,
        heartbeat_age_seconds=age,
        resubmissions=0,
        max_retries=3,
        cancel_requested=cancel,
    )


@pytest.mark.parametrize(
    ("case", "action"),
    [
        (candidate("CRASHED"), Action.CANCEL),  # crashed while a cancel was asked: not resubmitted
        (candidate("CRASHED", cancel=False), Action.RESUBMIT),
        (candidate(None, found=False), Action.CANCEL),  # lost
        (candidate("SCHEDULED"), Action.CANCEL),  # parked: a rescheduled retry or a wait
        (candidate("PAUSED"), Action.CANCEL),
        (candidate("SCHEDULED", cancel=False), Action.LEAVE),
        (candidate("RUNNING"), Action.LEAVE),  # alive: its flow stops at the next boundary
        (candidate("RUNNING", age=600), Action.CANCEL),  # silent past the window
        (candidate("RUNNING", age=600, cancel=False), Action.RESUBMIT),
        (candidate("PENDING"), Action.LEAVE),  # a worker is starting it
    ],
)
def test_recovery_of_a_job_with_a_cancel_requested(case: Candidate, action: Action) -> None:
    """Maintenance fails as cancelled, never resubmits, a job whose run will not reach a step
    boundary; a live run is left to stop by itself."""
    assert decide(case, heartbeat_window_seconds=60).action is action


@pytest.mark.parametrize(
    ("status", "history", "kind"),
    [
        ("failed", [{"status": "running"}, {"status": "failed", "kind": "cancelled"}], "cancelled"),
        ("failed", [{"status": "failed", "kind": "server_error"}], "server_error"),
        ("failed", [{"status": "failed"}], None),
        ("failed", [], None),
        ("failed", None, None),
        ("completed", [{"status": "completed", "kind": "cancelled"}], None),
        ("running", [{"status": "running"}], None),
    ],
)
def test_error_kind(status: str, history: object, kind: str | None) -> None:
    """The API's error_kind is the failing entry's kind, and null unless the job failed."""
    assert error_kind(status, history) == kind
