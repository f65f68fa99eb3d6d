"""The store side of schedule firings (migration 20261207001100). Service path.

A firing reads its schedule (`schedule`), creates its job through the API's job insert
(`JobStore.create_job`, idempotency key engine.jobs.schedule_firing.firing_key), and records
the outcome: `fired` for a created or found job (the row's last_fired_for and last_job_id),
`count` for a firing that created nothing. The job's end is recorded on the row by the
trigger jobs_schedule_outcome. The maintenance backfill lists the active schedules
(`active_schedules`) and which of their due firings have a job (`jobs_found`); a job it
creates is counted `backfilled` (migration 20261207001200).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from engine.db.rows import CreatedJob, Row
from engine.db.store import JobStore
from engine.jobs.schedule_firing import firing_key

#: The outcomes a firing counts (schedule_firing_counts.outcome).
OUTCOMES = ("created", "duplicate", "missed", "inactive", "backfilled")


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


class ScheduleFirings:
    """Reads and writes of one firing, on a job store's pool."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def schedule(self, schedule_id: str) -> Row | None:
        """The schedule row, or None when there is none (deleted, or not an id)."""
        if not _is_uuid(schedule_id):
            return None
        return self.store._fetchone("schedule_fire_get", {"schedule_id": schedule_id})

    def create_job(
        self,
        schedule: Row,
        scheduled_for: datetime,
        on_finish: Mapping[str, Any] | None = None,
    ) -> CreatedJob:
        """The job of this firing: created now, or found when this firing made it before.

        Owned by the schedule's user (None: an operator schedule), with the row's input_data
        and pinned version (None: the workflow's default at this firing), and `on_finish` (the
        workflow's callback target, as a start without one of its own gets). The request hash
        is the key itself, so a repeat of the firing is a replay, never a conflict.
        """
        key = firing_key(str(schedule["id"]), scheduled_for)
        return self.store.create_job(
            user_id=None if schedule["user_id"] is None else str(schedule["user_id"]),
            workflow_id=schedule["workflow_id"],
            workflow_version=schedule["workflow_version"],
            input_data=schedule["input_data"],
            idempotency_key=key,
            request_hash=key,
            on_finish=on_finish,
        )

    def fired(
        self,
        schedule_id: str,
        scheduled_for: datetime,
        job: CreatedJob,
        created_as: str = "created",
    ) -> None:
        """Record that the firing has its job, counted `created_as` (`created`, or
        `backfilled` by the maintenance pass) or `duplicate` when the job was there."""
        self.store._fetchone(
            "schedule_fire_record",
            {
                "schedule_id": schedule_id,
                "scheduled_for": scheduled_for,
                "job_id": job.id,
                "outcome": created_as if job.created else "duplicate",
            },
        )

    def active_schedules(self) -> list[Row]:
        """Every active schedule, with what a firing and the backfill read."""
        return self.store._fetchall("schedule_fire_backfill_list", {})

    def jobs_found(self, firings: Sequence[tuple[Row, datetime]]) -> set[str]:
        """The keys of those (schedule, scheduled time) firings that have their job."""
        if not firings:
            return set()
        rows = self.store._fetchall(
            "schedule_fire_backfill_found",
            {
                "keys": [firing_key(str(row["id"]), at) for row, at in firings],
                "user_ids": [row["user_id"] for row, _ in firings],
            },
        )
        return {str(r["idempotency_key"]) for r in rows}

    def count(self, outcome: str) -> None:
        """Count a firing that created no job (`missed` or `inactive`)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown firing outcome {outcome!r}")
        self.store._fetchone("schedule_fire_count", {"outcome": outcome})

    def counts(self) -> dict[str, int]:
        """How many firings ended each way (every outcome, 0 when none)."""
        rows = self.store._fetchall("schedule_fire_counts", {})
        found = {r["outcome"]: int(r["total"]) for r in rows}
        return {outcome: found.get(outcome, 0) for outcome in OUTCOMES}

    def failing(self, threshold: int) -> list[Row]:
        """Schedules whose jobs failed at least `threshold` times in a row."""
        return self.store._fetchall("schedule_fire_failing", {"threshold": threshold})
