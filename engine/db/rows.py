"""Typed rows the store hands to the engine, each built from one SQL row of a named query.

The flows read attributes, never string keys: a renamed column fails here, in one place, and
mypy sees every use. Rows the API serialises itself (its job reads) stay plain dicts (`Row`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.definitions.retry import DEFAULT_JOB_MAX_RETRIES
from engine.jobs.transitions import JobStatus

#: A row as psycopg's dict_row returns it.
Row = dict[str, Any]


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def job_max_retries(value: int | None) -> int:
    """A job's max_retries: the column's value, its default when NULL (or not given)."""
    return DEFAULT_JOB_MAX_RETRIES if value is None else int(value)


@dataclass(frozen=True)
class Upserted:
    """What a definitions upsert changed: the row's version now and before (None: added)."""

    id: str
    version: int
    previous_version: int | None

    @property
    def outcome(self) -> str:
        """'added', 'new version' (what runs changed) or 'updated' (description or flags)."""
        if self.previous_version is None:
            return "added"
        return "new version" if self.version != self.previous_version else "updated"


@dataclass(frozen=True)
class CreatedJob:
    """What POST /workflows/start answers, and whether this call created the job."""

    id: str
    status: str
    created_at: datetime
    created: bool
    #: A delayed start's time (jobs.scheduled_for); None: at once.
    scheduled_for: datetime | None = None


@dataclass(frozen=True)
class JobRow:
    """The columns of a job a flow run starts from (run_bundle.sql)."""

    id: str
    workflow_id: str
    user_id: str | None
    status: JobStatus
    input_data: Any
    step_data: dict[str, Any]
    retry_count: int
    max_retries: int
    resubmissions: int
    created_at: datetime
    #: The workflow version the job is pinned to (None only for a row read without it).
    workflow_version: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobRow:
        """From a jobs row (NULL step_data, retry_count, max_retries: the column defaults)."""
        return cls(
            id=str(row["id"]),
            workflow_id=str(row["workflow_id"]),
            user_id=_optional_str(row["user_id"]),
            status=JobStatus(row["status"]),
            input_data=row["input_data"],
            step_data=dict(row["step_data"] or {}),
            retry_count=int(row["retry_count"] or 0),
            max_retries=job_max_retries(row["max_retries"]),
            resubmissions=int(row["resubmissions"]),
            created_at=row["created_at"],
            workflow_version=row.get("workflow_version"),
        )


@dataclass(frozen=True)
class RunBundle:
    """A job with its workflow definition and the transformers its steps name, in one query.

    `definition` and `transformers` stay the stored JSON: the plan builder checks them (a
    bad one is the job's config error, not a store error).
    """

    job: JobRow
    definition: Any
    transformers: dict[str, dict[str, Any]]
    #: Steps whose retry was rescheduled past an earlier run: the attempt they resume at.
    first_attempts: dict[str, int] = field(default_factory=dict)
    #: A delayed job: seconds until its scheduled_for when read (negative: passed; None: none).
    starts_in_seconds: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunBundle:
        """From a run_bundle.sql row."""
        return cls(
            job=JobRow.from_row(row),
            definition=row["definition"],
            transformers=dict(row["transformers"] or {}),
            first_attempts={k: int(v) for k, v in (row.get("first_attempts") or {}).items()},
            starts_in_seconds=row.get("starts_in_seconds"),
        )


@dataclass(frozen=True)
class InFlightJob:
    """A job maintenance checks for a crashed or lost flow run (jobs_in_flight.sql)."""

    id: str
    status: JobStatus
    flow_run_id: str | None
    resubmissions: int
    max_retries: int
    #: Seconds since the job's last sign of life (heartbeat, update or creation).
    heartbeat_age_seconds: float
    #: Its owner asked to cancel it (jobs.cancel_requested_at is set).
    cancel_requested: bool = False
    #: A delayed job's time (jobs.scheduled_for): a resubmitted run starts no earlier.
    scheduled_for: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> InFlightJob:
        """From a jobs_in_flight.sql row."""
        return cls(
            id=str(row["id"]),
            status=JobStatus(row["status"]),
            flow_run_id=_optional_str(row["prefect_flow_run_id"]),
            resubmissions=int(row["resubmissions"]),
            max_retries=job_max_retries(row["max_retries"]),
            heartbeat_age_seconds=float(row["heartbeat_age_seconds"] or 0),
            cancel_requested=row.get("cancel_requested_at") is not None,
            scheduled_for=row.get("scheduled_for"),
        )


@dataclass(frozen=True)
class PendingJob:
    """A pending job that never reached the orchestrator (jobs_pending_undispatched.sql)."""

    id: str
    workflow_id: str
    created_at: datetime
    #: A delayed start: its flow run is created Scheduled for this time (None: at once).
    scheduled_for: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PendingJob:
        """From a jobs_pending_undispatched.sql row."""
        return cls(
            id=str(row["id"]),
            workflow_id=str(row["workflow_id"]),
            created_at=row["created_at"],
            scheduled_for=row.get("scheduled_for"),
        )
