"""Job control by its owner: what a cancel does to a job, what a rerun runs again (pure).

Cancel (POST /jobs/{id}/cancel): a job with no live step is failed at once; a job whose steps
are running is asked to stop, and its flow run stops at the next step boundary
(flows/job_control.py). Rerun (POST /jobs/{id}/rerun): a failed job runs again from its first
unfinished step; `from_step` also drops that step's output and the outputs of every step
downstream of it, so they run again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.definitions.graph import closure
from engine.jobs.transitions import TERMINAL, JobStatus

#: The error kind a cancelled job's failure carries (state_history's last entry, `kind`).
CANCELLED_KIND = "cancelled"


class CancelAction(StrEnum):
    """What a cancel request does to a job."""

    FAIL_NOW = "fail_now"  # no live step: the job is failed in the request's transaction
    REQUEST = "request"  # a step is live: the flow run stops at the next step boundary
    ALREADY_REQUESTED = "already_requested"  # an earlier cancel is still pending: no change
    FINISHED = "finished"  # the job already ended: nothing to cancel (409)


@dataclass(frozen=True)
class CancelTarget:
    """The parts of a locked job row a cancel decision reads."""

    status: JobStatus
    waiting: bool  # jobs.waiting_for is set: the flow run ended at a wait
    retry_rescheduled: bool  # awaiting a retry past its flow run (the run ended, Scheduled)
    cancel_requested: bool  # jobs.cancel_requested_at is set


def cancel_action(target: CancelTarget) -> CancelAction:
    """Fail now, ask the running flow to stop, or nothing (already asked, or finished).

    No step is live in a job that is `pending` (its flow run has not started a step), waiting
    (its flow run ended at the wait), or awaiting a rescheduled retry (its flow run ended,
    scheduled for the retry). An in-process retry (a short backoff) is slept inside the live
    flow run, so that job is asked like a running one.
    """
    if target.status in TERMINAL:
        return CancelAction.FINISHED
    if target.cancel_requested:
        return CancelAction.ALREADY_REQUESTED
    if target.status is JobStatus.PENDING or target.waiting:
        return CancelAction.FAIL_NOW
    if target.status is JobStatus.AWAITING_RETRY and target.retry_rescheduled:
        return CancelAction.FAIL_NOW
    return CancelAction.REQUEST


def downstream(deps: Mapping[str, Sequence[str]], step_id: str) -> list[str]:
    """`step_id` and every step that waits for it, directly or through others, in `deps`
    order (`deps`: each step's direct dependencies, engine.definitions.graph.dependencies)."""
    ups = closure(deps)
    return [s for s in deps if s == step_id or step_id in ups[s]]


def kept_outputs(step_data: Mapping[str, Any] | None, redo: Sequence[str]) -> dict[str, Any]:
    """The step outputs a rerun keeps: every stored one except the steps it redoes."""
    return {k: v for k, v in (step_data or {}).items() if k not in set(redo)}


def rerun_key(job_id: str, rerun: int) -> str:
    """The idempotency key of a job's `rerun`-th rerun flow run (the job id alone is its first
    flow run's key, which Prefect would return again)."""
    return f"{job_id}:rerun:{rerun}"


def error_kind(status: str, state_history: Any) -> str | None:
    """Why a failed job failed, from its last state_history entry (`kind`: a step's error
    kind, `config`, `crashed`, `cancelled`, ...); None unless the job is failed."""
    if status != JobStatus.FAILED.value or not isinstance(state_history, list):
        return None
    last = state_history[-1] if state_history else None
    kind = last.get("kind") if isinstance(last, dict) else None
    return kind if isinstance(kind, str) else None
