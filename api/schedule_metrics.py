"""The schedules' metric families (GET /metrics), from one database snapshot.

- `supaflow_schedules{state}`: schedules active or paused;
- `supaflow_schedule_firings_total{outcome}`: firings that created a job, found the job of an
  earlier run for the same time (`duplicate`), were skipped by the catch-up rule (`missed`)
  or found the schedule paused or deleted (`inactive`), and firings no run made that the
  maintenance pass made (`backfilled`);
- per schedule (label `schedule`: an operator schedule's name, else the row id; at most
  engine.db.metrics.SCHEDULE_METRICS_LIMIT schedules, active first):
  `supaflow_schedule_next_run_timestamp_seconds` (active schedules: the next firing as
  Prefect's scheduler computes it), `supaflow_schedule_last_fired_timestamp_seconds`,
  `supaflow_schedule_last_success` (1: its last finished job completed, 0: failed) and
  `supaflow_schedule_consecutive_failures` (what the schedule_failing alert reads).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from engine.db.metrics import MetricsSnapshot
from engine.schedule_rules import Rule, next_run_after

logger = logging.getLogger("supaflow.api.metrics")

PREFIX = "supaflow"
FIRING_OUTCOMES = ("created", "duplicate", "missed", "inactive", "backfilled")
SCHEDULE_METRIC_NAMES: tuple[str, ...] = (
    f"{PREFIX}_schedules",
    f"{PREFIX}_schedule_firings_total",
    f"{PREFIX}_schedule_next_run_timestamp_seconds",
    f"{PREFIX}_schedule_last_fired_timestamp_seconds",
    f"{PREFIX}_schedule_last_success",
    f"{PREFIX}_schedule_consecutive_failures",
)


def _next_run(row: Mapping[str, Any], now: datetime) -> datetime | None:
    try:
        return next_run_after(Rule.from_row(row), now)
    except Exception as exc:  # a row stored around the API's checks: no series, not a 500
        logger.warning("schedule %s: no next run (%s)", row["schedule"], exc)
        return None


def _count_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    counts = {(r["what"], r["label"]): float(r["value"]) for r in rows}
    schedules = GaugeMetricFamily(
        f"{PREFIX}_schedules", "Recurring schedules by state.", labels=["state"]
    )
    for state in ("active", "paused"):
        schedules.add_metric([state], counts.get(("schedules", state), 0.0))
    firings = CounterMetricFamily(
        f"{PREFIX}_schedule_firings",
        "Schedule firings by outcome: created a job, duplicate (the job of an earlier run "
        "for the same time), missed (catch-up rule), inactive (paused or deleted), backfilled "
        "(made by the maintenance pass: no run made it).",
        labels=["outcome"],
    )
    for outcome in FIRING_OUTCOMES:
        firings.add_metric([outcome], counts.get(("firing", outcome), 0.0))
    return [schedules, firings]


def schedule_families(snapshot: MetricsSnapshot, now: datetime | None = None) -> list[Metric]:
    """Every schedule metric family of one snapshot, in exposition order."""
    moment = now or datetime.now(UTC)
    labels = ["schedule", "workflow_id"]
    next_run = GaugeMetricFamily(
        f"{PREFIX}_schedule_next_run_timestamp_seconds",
        "Next firing of each active schedule (Unix time).",
        labels=labels,
    )
    last_fired = GaugeMetricFamily(
        f"{PREFIX}_schedule_last_fired_timestamp_seconds",
        "Scheduled time of each schedule's latest firing that made a job (Unix time).",
        labels=labels,
    )
    success = GaugeMetricFamily(
        f"{PREFIX}_schedule_last_success",
        "1 when the schedule's last finished job completed, 0 when it failed.",
        labels=labels,
    )
    failures = GaugeMetricFamily(
        f"{PREFIX}_schedule_consecutive_failures",
        "Failed jobs in a row of each schedule (0 after a completed one).",
        labels=labels,
    )
    for row in snapshot.schedules:
        values = [str(row["schedule"]), str(row["workflow_id"])]
        if row["active"] and (at := _next_run(row, moment)) is not None:
            next_run.add_metric(values, at.timestamp())
        if row["last_fired_for"] is not None:
            last_fired.add_metric(values, row["last_fired_for"].timestamp())
        if row["last_status"] in ("completed", "failed"):
            success.add_metric(values, 1.0 if row["last_status"] == "completed" else 0.0)
        failures.add_metric(values, float(row["consecutive_failures"]))
    return [*_count_families(snapshot.schedule_counts), next_run, last_fired, success, failures]
