"""Reading the metrics views (migration 20261125000500) for a Prometheus scrape.

`read_metrics` runs every metrics query on one pooled connection and returns plain rows; the
histogram queries count observations per bucket in SQL and `cumulative_histogram` (pure) turns
those counts into Prometheus' cumulative `le` buckets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg
from psycopg_pool import ConnectionPool

from engine.db.queries import load_sql

Row = dict[str, Any]

#: Job durations run from under a second (no-op steps) to hours (long transcriptions).
JOB_DURATION_BOUNDS: tuple[float, ...] = (
    0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200,
)  # fmt: skip
#: Most schedules given per-schedule series (label `schedule`), active ones first.
SCHEDULE_METRICS_LIMIT = 500
#: One step attempt: a JSON transform takes milliseconds, a model call minutes.
STEP_DURATION_BOUNDS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
)  # fmt: skip


def _sql(name: str) -> LiteralString:
    # The text comes from our own package files, never from input.
    return load_sql(name)  # type: ignore[return-value,unused-ignore]


@dataclass(frozen=True)
class HistogramSeries:
    """One labelled histogram: cumulative counts per upper bound (the last is +Inf)."""

    labels: tuple[str, ...]
    buckets: list[tuple[str, int]]
    count: int
    total: float


@dataclass(frozen=True)
class MetricsSnapshot:
    """Every metrics view's rows, read at one scrape."""

    job_outcomes: list[Row] = field(default_factory=list)
    job_failures: list[Row] = field(default_factory=list)
    step_failures: list[Row] = field(default_factory=list)
    job_duration_by_workflow: list[Row] = field(default_factory=list)
    job_durations: list[HistogramSeries] = field(default_factory=list)
    step_durations: list[HistogramSeries] = field(default_factory=list)
    queue: list[Row] = field(default_factory=list)
    alerts_open: list[Row] = field(default_factory=list)
    service_restarts: list[Row] = field(default_factory=list)
    callbacks: list[Row] = field(default_factory=list)
    #: Per-schedule rows (at most SCHEDULE_METRICS_LIMIT) and firing/schedule counts.
    schedules: list[Row] = field(default_factory=list)
    schedule_counts: list[Row] = field(default_factory=list)


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def cumulative_histogram(
    rows: Iterable[Mapping[str, Any]],
    label_columns: Sequence[str],
    bounds: Sequence[float],
) -> list[HistogramSeries]:
    """Group per-bucket rows (`bucket`, `observations`, `total_seconds`) into histograms.

    `bucket` i counts observations greater than bounds[i-1] and at most bounds[i];
    i == len(bounds) is the overflow bucket (+Inf). Output buckets are cumulative.
    """
    grouped: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
    for row in rows:
        labels = tuple("" if row[c] is None else str(row[c]) for c in label_columns)
        counts, total = grouped.setdefault(labels, ([0] * (len(bounds) + 1), [0.0]))
        index = min(max(int(row["bucket"]), 0), len(bounds))
        counts[index] += int(row["observations"])
        total[0] += float(row["total_seconds"] or 0.0)
    series: list[HistogramSeries] = []
    for labels, (counts, total) in sorted(grouped.items()):
        running = 0
        buckets: list[tuple[str, int]] = []
        for bound, count in zip([*bounds, float("inf")], counts, strict=True):
            running += count
            buckets.append((_bound_text(bound), running))
        series.append(HistogramSeries(labels, buckets, running, total[0]))
    return series


def read_metrics(
    pool: ConnectionPool[psycopg.Connection[Row]],
    *,
    job_bounds: Sequence[float] = JOB_DURATION_BOUNDS,
    step_bounds: Sequence[float] = STEP_DURATION_BOUNDS,
    timeout: float = 5.0,
) -> MetricsSnapshot:
    """Every metrics view, read in one read-only transaction (a consistent snapshot)."""
    with pool.connection(timeout=timeout) as conn, conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")

        def rows(name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
            return conn.execute(_sql(name), params or {}).fetchall()

        return MetricsSnapshot(
            job_outcomes=rows("metrics_job_outcomes"),
            job_failures=rows("metrics_job_failures"),
            step_failures=rows("metrics_step_failures"),
            job_duration_by_workflow=rows("metrics_job_duration_by_workflow"),
            job_durations=cumulative_histogram(
                rows("metrics_job_duration_buckets", {"bounds": [float(b) for b in job_bounds]}),
                ("workflow_id", "status"),
                job_bounds,
            ),
            step_durations=cumulative_histogram(
                rows("metrics_step_duration_buckets", {"bounds": [float(b) for b in step_bounds]}),
                ("transformer_id", "outcome"),
                step_bounds,
            ),
            queue=rows("metrics_queue"),
            alerts_open=rows("metrics_alerts_open"),
            service_restarts=rows("metrics_service_restarts"),
            callbacks=rows("metrics_callbacks"),
            schedules=rows("metrics_schedules", {"limit": SCHEDULE_METRICS_LIMIT}),
            schedule_counts=rows("metrics_schedule_firings"),
        )
