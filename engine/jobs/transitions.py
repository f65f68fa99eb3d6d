"""Job statuses and the transitions between them (pure).

The job row mirrors Prefect: `running` while a step's task run is Running or Retrying,
`awaiting_retry` while it is AwaitingRetry, `completed`/`failed` when the flow run ends.
`pending` is a job whose flow run has not started yet (or was resubmitted after a crash, or
is a failed job its owner reran: the one move out of a terminal status).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """The five statuses of SPEC.md's jobs.status CHECK."""

    PENDING = "pending"
    RUNNING = "running"
    AWAITING_RETRY = "awaiting_retry"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL: frozenset[JobStatus] = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})

#: Allowed moves. `running -> running` is a step change; `* -> pending` is a resubmission
#: after the flow run crashed or was lost, and `failed -> pending` a rerun (POST
#: /jobs/{id}/rerun; only job_rerun.sql makes it, guarded by `rerun_sources`).
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.PENDING}),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.RUNNING,
            JobStatus.AWAITING_RETRY,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.PENDING,
        }
    ),
    JobStatus.AWAITING_RETRY: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.PENDING}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.PENDING}),
}


def sources_of(target: JobStatus) -> list[str]:
    """Every unfinished status from which `target` may be entered (the SQL guard of the
    engine's transitions, job_transition.sql). A finished job is left only by a rerun, whose
    own guard is `rerun_sources`, so a late writer never reopens a finished job."""
    return sorted(
        s.value for s, targets in ALLOWED.items() if target in targets and s not in TERMINAL
    )


def can_move(source: JobStatus, target: JobStatus) -> bool:
    """Whether a job in `source` may move to `target`."""
    return target in ALLOWED[source]


def rerun_sources() -> list[str]:
    """The statuses a rerun starts from: the terminal ones that may move to `pending`
    (`failed`; a completed job is never rerun). The SQL guard of job_rerun.sql."""
    return sorted(s.value for s in TERMINAL if can_move(s, JobStatus.PENDING))
