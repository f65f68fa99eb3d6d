"""The alerts table and the observations the alert rules read (service path, psycopg 3).

`observe` gathers what engine.jobs.alerts evaluates; `reconcile` makes the table match the rules'
verdict in one transaction (open or refresh the wanted alerts, resolve the others of the
evaluated kinds); `list_alerts` serves the operator endpoint; `deliveries_due` yields the
owed webhook deliveries, locked, with a `DeliveryBatch` to record each outcome.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from engine.db.pool import query
from engine.db.rows import Row
from engine.jobs.alerts import (
    ActiveJob,
    AlertCandidate,
    AlertKind,
    AlertThresholds,
    ConfigErrors,
    FailingSchedule,
    Observations,
    WorkflowOutcomes,
)

AlertState = Literal["open", "resolved", "all"]

#: Most stalled jobs one evaluation reads (the alert's count is capped at this).
ACTIVE_JOBS_LIMIT = 1000


@dataclass(frozen=True)
class Reconciled:
    """What one reconciliation changed: (id, kind, subject) of opened and resolved alerts."""

    opened: list[tuple[int, str, str]]
    refreshed: list[tuple[int, str, str]]
    resolved: list[tuple[int, str, str]]


def _active_job(r: Row) -> ActiveJob:
    return ActiveJob(
        job_id=r["job_id"],
        workflow_id=r["workflow_id"],
        status=r["status"],
        last_activity_at=r["last_activity_at"],
        next_retry_at=r["next_retry_at"],
        waiting=r["waiting"],
        wait_deadline=r["wait_deadline"],
    )


def _config_errors(r: Row) -> ConfigErrors:
    return ConfigErrors(
        workflow_id=r["workflow_id"],
        errors=int(r["errors"]),
        last_at=r["last_at"],
        last_job_id=r["last_job_id"],
        last_message=r["last_message"],
    )


def _failing_schedule(r: Row) -> FailingSchedule:
    return FailingSchedule(
        schedule=r["schedule"],
        workflow_id=r["workflow_id"],
        consecutive_failures=int(r["consecutive_failures"]),
        last_job_id=None if r["last_job_id"] is None else str(r["last_job_id"]),
    )


class AlertStore:
    """Reads and writes `public.alerts` and the alert rules' inputs through a pool."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Row]]) -> None:
        self.pool = pool

    def observe(
        self, thresholds: AlertThresholds, *, maintenance_seconds: float | None = None
    ) -> Observations:
        """Everything the alert rules look at, read in one snapshot at database time."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("set transaction isolation level repeatable read, read only")
            queue = conn.execute(query("alerts_queue")).fetchone()
            assert queue is not None  # an aggregate always returns one row
            outcomes = conn.execute(
                query("alerts_failure_window"),
                {"window_seconds": thresholds.failure_window_seconds},
            ).fetchall()
            active = conn.execute(
                query("alerts_active_jobs"),
                {
                    "running_seconds": thresholds.stalled_running_seconds,
                    "retry_grace_seconds": thresholds.stalled_retry_grace_seconds,
                    "limit": ACTIVE_JOBS_LIMIT,
                },
            ).fetchall()
            config = conn.execute(
                query("alerts_config_errors"),
                {"window_seconds": thresholds.config_error_window_seconds},
            ).fetchall()
            schedules = conn.execute(
                query("schedule_fire_failing"), {"threshold": thresholds.schedule_failures}
            ).fetchall()
        return Observations(
            now=queue["now"],
            outcomes=[
                WorkflowOutcomes(r["workflow_id"], int(r["finished"]), int(r["failed"]))
                for r in outcomes
            ],
            active_jobs=[_active_job(r) for r in active],
            pending_jobs=int(queue["pending_jobs"]),
            oldest_pending_created_at=queue["oldest_pending_created_at"],
            config_errors=[_config_errors(r) for r in config],
            failing_schedules=[_failing_schedule(r) for r in schedules],
            maintenance_seconds=maintenance_seconds,
        )

    def reconcile(
        self, candidates: Sequence[AlertCandidate], kinds: Collection[AlertKind]
    ) -> Reconciled:
        """Open or refresh every candidate; resolve open alerts of `kinds` not among them."""
        unique = {c.key: c for c in candidates}  # one row per key, or the upsert would fail
        wanted = list(unique.values())
        opened: list[tuple[int, str, str]] = []
        refreshed: list[tuple[int, str, str]] = []
        with self.pool.connection() as conn, conn.transaction():
            if wanted:
                rows = conn.execute(
                    query("alerts_upsert"),
                    {
                        "kinds": [c.kind.value for c in wanted],
                        "subjects": [c.subject for c in wanted],
                        "severities": [c.severity.value for c in wanted],
                        "messages": [c.message for c in wanted],
                        "details": [Jsonb(c.detail) for c in wanted],
                    },
                ).fetchall()
                for r in rows:
                    (opened if r["opened"] else refreshed).append(
                        (int(r["id"]), r["kind"], r["subject"])
                    )
            resolved_rows = conn.execute(
                query("alerts_resolve_absent"),
                {
                    "kinds": sorted(k.value for k in kinds),
                    "open_kinds": [c.kind.value for c in wanted],
                    "open_subjects": [c.subject for c in wanted],
                },
            ).fetchall()
        return Reconciled(
            opened=sorted(opened),
            refreshed=sorted(refreshed),
            resolved=sorted((int(r["id"]), r["kind"], r["subject"]) for r in resolved_rows),
        )

    def list_alerts(self, state: AlertState = "open", *, limit: int = 100) -> list[Row]:
        """Alerts newest first: open ones, resolved ones, or all."""
        with self.pool.connection() as conn:
            return conn.execute(query("alerts_list"), {"state": state, "limit": limit}).fetchall()

    @contextmanager
    def deliveries_due(self, *, limit: int = 20, max_attempts: int = 10) -> Iterator[DeliveryBatch]:
        """Alerts owing a webhook delivery, row-locked until the block ends (then committed).

        Each delivery's `event` is 'opened' or 'resolved'; mark each through the batch.
        """
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                query("alerts_deliveries_due"), {"limit": limit, "max_attempts": max_attempts}
            ).fetchall()
            yield DeliveryBatch(conn, rows)


#: The alert columns a delivery carries (alerts_deliveries_due.sql), in the body's order.
DELIVERY_FIELDS = (
    "id", "kind", "subject", "severity", "message", "detail",
    "opened_at", "last_seen_at", "resolved_at",
)  # fmt: skip


@dataclass(frozen=True)
class Delivery:
    """One owed webhook delivery: the alert's id, the event owed, and the alert's columns."""

    alert_id: int
    event: Literal["opened", "resolved"]
    kind: str
    subject: str
    alert: dict[str, Any]

    @classmethod
    def from_row(cls, row: Row) -> Delivery:
        """From one row of alerts_deliveries_due.sql."""
        alert = {k: row[k] for k in DELIVERY_FIELDS}
        event: Literal["opened", "resolved"] = (
            "resolved" if row["event"] == "resolved" else "opened"
        )
        return cls(int(row["id"]), event, str(row["kind"]), str(row["subject"]), alert)


class DeliveryBatch:
    """Deliveries locked by one `deliveries_due` block, and how to record their outcome."""

    def __init__(self, conn: psycopg.Connection[Row], rows: list[Row]) -> None:
        self._conn = conn
        self.deliveries = [Delivery.from_row(row) for row in rows]

    def mark_delivered(self, alert_id: int, event: str) -> None:
        """Record a successful delivery of `event` ('opened' or 'resolved')."""
        self._conn.execute(query("alerts_mark_delivered"), {"id": alert_id, "event": event})

    def mark_failed(self, alert_id: int, error: str) -> None:
        """Record a failed delivery; it is tried again on the next pass."""
        self._conn.execute(query("alerts_mark_delivery_failed"), {"id": alert_id, "error": error})
