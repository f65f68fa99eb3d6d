"""Job deadlines (a workflow's `timeout_seconds`, jobs.deadline_at) in the flows.

- `run_job_deadlines`: the maintenance pass. Every unfinished job past its deadline is failed
  with error kind `timeout` (one transaction, SKIP LOCKED, status-guarded: one terminal
  transition even when passes overlap; engine/db/job_deadlines.py), its pending waits
  expired. Then, after the commit, its flow run is stopped: a run executing (Running,
  Pending) is set Cancelling, which the warm worker honours before the run's next step and
  then marks Cancelled; a parked one (Scheduled for a retry or a sleep, Paused at a wait) is
  set Failed with the timeout, so it never runs again. A run Prefect cannot be told about
  now finds its job finished when it runs, and does nothing.
- `BoundaryWatch`: `run_workflow`'s check at each step boundary, the owner's cancel
  (flows/job_control.py `CancelWatch`) and the job's deadline (`DeadlineWatch`): past the
  deadline no new step starts, and once the running ones finished `JobTimedOut` ends the
  run, the job failed as `timeout` (if maintenance did not already). A cancel wins.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

from prefect.states import Cancelling

from engine.db import job_deadlines
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from flows.job_control import CancelWatch

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]

#: Prefect state types of a flow run that is executing somewhere (stopped by Cancelling).
_EXECUTING = frozenset({"RUNNING", "PENDING", "CANCELLING"})


@dataclass
class JobDeadlineOutcome:
    """What one pass did."""

    failed: dict[str, str] = field(default_factory=dict)  # job id -> error message
    cancelling: list[str] = field(default_factory=list)  # flow runs asked to stop
    ended: list[str] = field(default_factory=list)  # parked flow runs set Failed
    errors: list[str] = field(default_factory=list)  # flow runs Prefect did not take

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the maintenance flow's return value."""
        return asdict(self)


def _stop_run(starter: RunStarter, run_id: str, message: str, outcome: JobDeadlineOutcome) -> None:
    try:
        run = starter.client.read_flow_run(UUID(run_id))
        state = run.state.type.value if run.state is not None else ""
        if run.state is not None and run.state.is_final():
            return
        if state in _EXECUTING:
            starter.client.set_flow_run_state(UUID(run_id), Cancelling(message=message), force=True)
            outcome.cancelling.append(run_id)
            return
    except Exception as exc:  # Prefect unreachable: the run finds its job finished later
        logging.getLogger("supaflow.deadlines").warning(
            "could not stop the flow run of a timed-out job: %s", exc
        )
        outcome.errors.append(run_id)
        return
    (outcome.ended if starter.fail(run_id, message) else outcome.errors).append(run_id)


def run_job_deadlines(
    store: JobStore, starter: RunStarter, *, log: Log, limit: int = 100
) -> JobDeadlineOutcome:
    """One pass (see the module docstring)."""
    outcome = JobDeadlineOutcome()
    for timed_out in job_deadlines.fail_past_deadline(store, limit):
        outcome.failed[timed_out.job_id] = timed_out.message
        log.warning(
            "job deadline: job failed: %s",
            timed_out.message,
            extra={"job_id": timed_out.job_id, "decision": "job_deadline"},
        )
        if timed_out.flow_run_id is not None:
            _stop_run(starter, timed_out.flow_run_id, timed_out.message, outcome)
    return outcome


class JobTimedOut(Exception):  # noqa: N818 - control flow, not an error
    """The job passed its deadline; its flow run stopped at a step boundary."""

    def __init__(self, job_id: str, message: str, timeout_seconds: Any) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.message = message
        self.timeout_seconds = timeout_seconds

    def fail_job(self, store: JobStore, flow_run_id: str | None, logger: Log) -> None:
        """Fail the job as `timeout` (no-op when maintenance already failed it)."""
        store.transition(
            self.job_id,
            job_deadlines.timeout_transition(self.message, self.timeout_seconds),
            flow_run_id=flow_run_id,
        )
        logger.error(
            self.message,
            extra={"job_id": self.job_id, "status": "failed", "error_kind": "timeout"},
        )


class DeadlineWatch:
    """The job's deadline, read once when the flow run starts, checked at each boundary."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self._job_id = job_id
        self._deadline = job_deadlines.job_deadline(store, job_id)
        # By the database's clock when read, kept by this process's monotonic clock.
        self._at = (
            None if self._deadline is None else time.monotonic() + self._deadline.seconds_left
        )

    def passed(self) -> bool:
        """Whether the job's deadline has passed (never, for a job without one)."""
        return self._at is not None and time.monotonic() >= self._at

    def raise_if_passed(self) -> None:
        """JobTimedOut once the deadline has passed."""
        if self._deadline is not None and self.passed():
            message = job_deadlines.timeout_message(
                self._deadline.timeout_seconds, self._deadline.at
            )
            raise JobTimedOut(self._job_id, message, self._deadline.timeout_seconds)


class BoundaryWatch:
    """What stops a flow run at its step boundaries: its owner's cancel, then its deadline."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.cancel = CancelWatch(store, job_id)
        self.deadline = DeadlineWatch(store, job_id)

    def check(self) -> bool:
        """True once a cancel was requested or the deadline passed: start no new step."""
        return self.cancel.check() or self.deadline.passed()

    def raise_if_requested(self) -> None:
        """JobCancelled if a cancel was requested, else JobTimedOut if the deadline passed
        (the last boundary: every running step finished)."""
        self.cancel.raise_if_requested()
        self.deadline.raise_if_passed()
