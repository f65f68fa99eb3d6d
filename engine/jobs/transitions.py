"""Job statuses and the transitions between them (pure).

The job row mirrors Prefect: `running` while a step's task run is Running or Retrying,
`awaiting_retry` while it is AwaitingRetry, `completed`/`failed` when the flow run ends.
`pending` is a job whose flow run has not started yet (or was resubmitted after a crash).
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
#: after the flow run crashed or was lost.
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
    JobStatus.FAILED: frozenset(),
}


def sources_of(target: JobStatus) -> list[str]:
    """Every status from which `target` may be entered (used as a SQL guard)."""
    return sorted(s.value for s, targets in ALLOWED.items() if target in targets)


def can_move(source: JobStatus, target: JobStatus) -> bool:
    """Whether a job in `source` may move to `target`."""
    return target in ALLOWED[source]
