"""What the maintenance flow does with a job whose flow run may be gone (pure).

A job is a candidate when its row says it is in flight (`running`, `awaiting_retry`, or
`pending` with a flow run already created). Prefect's view of that flow run decides:
crashed, cancelled by infrastructure, missing, or silent past the heartbeat window means the
work stopped without the job row hearing of it; the job is then resubmitted (a new flow run
that resumes at its first unfinished step) after a backoff, or failed once its
resubmissions reach `max_retries`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """The maintenance decision for one job."""

    LEAVE = "leave"  # the flow run is alive or not started yet
    RESUBMIT = "resubmit"  # create a new flow run that resumes the job
    GIVE_UP = "give_up"  # too many resubmissions: fail the job
    CANCEL = "cancel"  # its owner asked to cancel and no run will: fail it as cancelled


#: Prefect state types after which a flow run will not touch the job again.
ENDED_STATES = frozenset({"CRASHED", "CANCELLED", "FAILED", "COMPLETED"})
#: Prefect state types of a flow run that is waiting to start (possibly on purpose: a
#: resubmission's backoff is a future scheduled time).
WAITING_STATES = frozenset({"SCHEDULED", "PAUSED"})
#: States in which a live process must be working on the run: PENDING is a run a worker
#: claimed; if that worker died before starting it, only the silence tells.
ACTIVE_STATES = frozenset({"RUNNING", "PENDING", "CANCELLING"})


@dataclass(frozen=True)
class Candidate:
    """One in-flight job and what Prefect says about its flow run."""

    job_id: str
    status: str
    flow_run_found: bool
    flow_run_state: str | None  # Prefect StateType name, None if unknown
    heartbeat_age_seconds: float | None  # since the job's last sign of life
    resubmissions: int
    max_retries: int
    cancel_requested: bool = False  # jobs.cancel_requested_at is set


@dataclass(frozen=True)
class Decision:
    """What to do, why (for the job's error_message and the logs), and after what delay."""

    action: Action
    reason: str
    delay_seconds: float = 0.0


def backoff_seconds(resubmissions: int, *, base: float = 5.0, cap: float = 300.0) -> float:
    """Delay before resubmission number `resubmissions + 1`: base * 2**resubmissions, capped."""
    return float(min(cap, base * (2 ** min(resubmissions, 30))))


def decide(
    candidate: Candidate,
    *,
    heartbeat_window_seconds: float,
    backoff_base_seconds: float = 5.0,
    backoff_cap_seconds: float = 300.0,
) -> Decision:
    """Leave, resubmit (with backoff), give up on or cancel one candidate job."""
    if candidate.cancel_requested and (
        stopped := _stopped_for_cancel(candidate, heartbeat_window_seconds)
    ):
        return Decision(Action.CANCEL, stopped)
    if not candidate.flow_run_found:
        reason = "its flow run was lost (Prefect no longer knows it)"
    elif candidate.flow_run_state in ENDED_STATES:
        reason = f"its flow run ended as {candidate.flow_run_state} without finishing the job"
    elif candidate.flow_run_state not in ACTIVE_STATES:
        return Decision(Action.LEAVE, f"flow run is {candidate.flow_run_state or 'unknown'}")
    elif (
        candidate.heartbeat_age_seconds is not None
        and candidate.heartbeat_age_seconds > heartbeat_window_seconds
    ):
        reason = (
            f"no sign of life for {candidate.heartbeat_age_seconds:.0f} s "
            f"(heartbeat window {heartbeat_window_seconds:.0f} s)"
        )
    else:
        return Decision(Action.LEAVE, "flow run is alive")
    if candidate.resubmissions >= candidate.max_retries:
        return Decision(
            Action.GIVE_UP,
            f"{reason}; the job was already resubmitted {candidate.resubmissions} time(s), "
            f"its max_retries is {candidate.max_retries}",
        )
    return Decision(
        Action.RESUBMIT,
        reason,
        backoff_seconds(
            candidate.resubmissions, base=backoff_base_seconds, cap=backoff_cap_seconds
        ),
    )


def _stopped_for_cancel(candidate: Candidate, heartbeat_window_seconds: float) -> str | None:
    """Why a job with a cancel requested will not reach a step boundary on its own: its run
    ended, was lost, went silent, or is parked (scheduled or paused). None while a live run
    will; such a job is never resubmitted, it is failed as cancelled."""
    if not candidate.flow_run_found:
        return "a cancel was requested and its flow run was lost"
    if candidate.flow_run_state in ENDED_STATES:
        return f"a cancel was requested and its flow run ended as {candidate.flow_run_state}"
    if candidate.flow_run_state in WAITING_STATES:
        return f"a cancel was requested while its flow run was {candidate.flow_run_state}"
    age = candidate.heartbeat_age_seconds
    if (
        candidate.flow_run_state in ACTIVE_STATES
        and age is not None
        and age > heartbeat_window_seconds
    ):
        return f"a cancel was requested and its flow run was silent for {age:.0f} s"
    return None
