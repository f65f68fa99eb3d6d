"""The metrics GET /metrics exposes (api/routes/metrics.py), and the response-time histogram.

Two sources:
- **the database**, read at scrape time from the metrics views (engine.db.metrics): job
  outcomes and rates, failures by step and error kind, job and step duration histograms, queue
  length, open alerts, schedules (api/schedule_metrics.py). Every API replica reports the
  same numbers, so aggregate with max() or scrape one replica;
- **this process**: `supaflow_api_request_duration_seconds{route,method,status}`, observed by
  `ResponseTimeMiddleware` with the route *template* (`/jobs/{job_id}`), never the raw path, so
  label cardinality stays bounded; and the rate limiter's state (`RateLimitCollector`):
  `supaflow_rate_limit_local_fallback` (1 while Redis fails and this replica limits on its
  own) and `supaflow_rate_limit_fallbacks_total`. These differ per replica: scrape each.

Wire it with `install_metrics(app)`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ratelimit import RateLimiter
from api.schedule_metrics import SCHEDULE_METRIC_NAMES, schedule_families
from engine.db.metrics import HistogramSeries, MetricsSnapshot, read_metrics

logger = logging.getLogger("supaflow.api.metrics")

PREFIX = "supaflow"
#: Route label of requests that matched no route (404s for arbitrary paths).
UNMATCHED_ROUTE = "unmatched"
API_DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: Every metric family GET /metrics exposes, as named on its `# TYPE` line (histograms add
#: _bucket, _sum and _count samples).
METRIC_NAMES: tuple[str, ...] = (
    f"{PREFIX}_metrics_database_up",
    f"{PREFIX}_jobs",
    f"{PREFIX}_jobs_finished_total",
    f"{PREFIX}_job_completion_rate",
    f"{PREFIX}_job_failure_rate",
    f"{PREFIX}_job_failures_total",
    f"{PREFIX}_job_failure_rate_by_step",
    f"{PREFIX}_step_attempt_failures_total",
    f"{PREFIX}_job_duration_seconds",
    f"{PREFIX}_job_duration_average_seconds",
    f"{PREFIX}_step_duration_seconds",
    f"{PREFIX}_queue_length",
    f"{PREFIX}_queue_oldest_age_seconds",
    f"{PREFIX}_queue_overdue_retries",
    f"{PREFIX}_alerts_open",
    f"{PREFIX}_service_restarts_total",
    f"{PREFIX}_callbacks_total",
    f"{PREFIX}_callback_attempts_total",
    *SCHEDULE_METRIC_NAMES,
    f"{PREFIX}_api_request_duration_seconds",
    f"{PREFIX}_rate_limit_local_fallback",
    f"{PREFIX}_rate_limit_fallbacks_total",
)


def _label(value: Any) -> str:
    return "" if value is None else str(value)


def _histogram(
    name: str, documentation: str, labels: list[str], series: Iterable[HistogramSeries]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for s in series:
        family.add_metric(list(s.labels), buckets=s.buckets, sum_value=s.total)
    return family


def _outcome_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Jobs by status, finished jobs, and completion and failure rates, per workflow."""
    jobs = GaugeMetricFamily(
        f"{PREFIX}_jobs", "Jobs by workflow and current status.", labels=["workflow_id", "status"]
    )
    finished = CounterMetricFamily(
        f"{PREFIX}_jobs_finished",
        "Finished jobs by workflow and final status.",
        labels=["workflow_id", "status"],
    )
    completion = GaugeMetricFamily(
        f"{PREFIX}_job_completion_rate",
        "Completed / finished jobs per workflow (0..1).",
        labels=["workflow_id"],
    )
    failure = GaugeMetricFamily(
        f"{PREFIX}_job_failure_rate",
        "Failed / finished jobs per workflow (0..1).",
        labels=["workflow_id"],
    )
    for r in rows:
        wf = _label(r["workflow_id"])
        for status in ("pending", "running", "awaiting_retry", "completed", "failed"):
            jobs.add_metric([wf, status], float(r[status]))
        finished.add_metric([wf, "completed"], float(r["completed"]))
        finished.add_metric([wf, "failed"], float(r["failed"]))
        if r["completion_rate"] is not None:
            completion.add_metric([wf], float(r["completion_rate"]))
            failure.add_metric([wf], float(r["failure_rate"]))
    return [jobs, finished, completion, failure]


def _failure_families(snapshot: MetricsSnapshot) -> list[Metric]:
    """Failed jobs by failing step and error kind, and failed step attempts."""
    labels = ["workflow_id", "step_id", "error_kind"]
    job_failures = CounterMetricFamily(
        f"{PREFIX}_job_failures",
        "Failed jobs by workflow, failing step and error kind.",
        labels=labels,
    )
    failure_by_step = GaugeMetricFamily(
        f"{PREFIX}_job_failure_rate_by_step",
        "Failed jobs (at this step, of this kind) / finished jobs of the workflow (0..1).",
        labels=labels,
    )
    for r in snapshot.job_failures:
        values = [_label(r["workflow_id"]), _label(r["step_id"]), _label(r["error_kind"])]
        job_failures.add_metric(values, float(r["failed_jobs"]))
        if r["failure_rate"] is not None:
            failure_by_step.add_metric(values, float(r["failure_rate"]))
    step_failures = CounterMetricFamily(
        f"{PREFIX}_step_attempt_failures",
        "Failed step attempts (each retry counts) by workflow, step, transformer, error kind.",
        labels=["workflow_id", "step_id", "transformer_id", "error_kind"],
    )
    for r in snapshot.step_failures:
        step_failures.add_metric(
            [_label(r[c]) for c in ("workflow_id", "step_id", "transformer_id", "error_kind")],
            float(r["failed_attempts"]),
        )
    return [job_failures, failure_by_step, step_failures]


def _duration_families(snapshot: MetricsSnapshot) -> list[Metric]:
    """Job and step duration histograms, and the average job duration per workflow."""
    average = GaugeMetricFamily(
        f"{PREFIX}_job_duration_average_seconds",
        "Average execution time of completed jobs per workflow.",
        labels=["workflow_id"],
    )
    for r in snapshot.job_duration_by_workflow:
        if r["avg_duration_seconds"] is not None:
            average.add_metric([_label(r["workflow_id"])], float(r["avg_duration_seconds"]))
    return [
        _histogram(
            f"{PREFIX}_job_duration_seconds",
            "Execution time of finished jobs (started to completed) by workflow and status.",
            ["workflow_id", "status"],
            snapshot.job_durations,
        ),
        average,
        _histogram(
            f"{PREFIX}_step_duration_seconds",
            "Execution time of finished step attempts by transformer and outcome.",
            ["transformer_id", "outcome"],
            snapshot.step_durations,
        ),
    ]


def _queue_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Waiting jobs by status, the oldest one's age, and overdue retries."""
    queue_length = GaugeMetricFamily(
        f"{PREFIX}_queue_length", "Jobs waiting: pending or awaiting_retry.", labels=["status"]
    )
    oldest = GaugeMetricFamily(
        f"{PREFIX}_queue_oldest_age_seconds",
        "Age of the oldest job in the status (since creation).",
        labels=["status"],
    )
    overdue = GaugeMetricFamily(
        f"{PREFIX}_queue_overdue_retries", "awaiting_retry jobs whose next_retry_at has passed."
    )
    overdue_total = 0.0
    for r in rows:
        queue_length.add_metric([r["status"]], float(r["jobs"]))
        oldest.add_metric([r["status"]], float(r["oldest_age_seconds"] or 0.0))
        if r["status"] == "awaiting_retry":
            overdue_total += float(r["overdue_jobs"])
    overdue.add_metric([], overdue_total)
    return [queue_length, oldest, overdue]


def _alert_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Open alerts by kind and severity."""
    alerts = GaugeMetricFamily(
        f"{PREFIX}_alerts_open", "Open alerts by kind and severity.", labels=["kind", "severity"]
    )
    for r in rows:
        alerts.add_metric([r["kind"], r["severity"]], float(r["alerts"]))
    return [alerts]


def _restart_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Restarts of the engine's processes by their supervisor, per service."""
    restarts = CounterMetricFamily(
        f"{PREFIX}_service_restarts",
        "Processes restarted by their supervisor after they exited, per service.",
        labels=["service"],
    )
    for r in rows:
        restarts.add_metric([r["service"]], float(r["restarts"]))
    return [restarts]


def _callback_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Job callbacks (on_finish) by delivery status, and the attempts they took."""
    callbacks = CounterMetricFamily(
        f"{PREFIX}_callbacks",
        "Job callbacks by delivery status: pending (retrying), delivered, failed (gave up).",
        labels=["status"],
    )
    attempts = CounterMetricFamily(
        f"{PREFIX}_callback_attempts",
        "Delivery attempts of job callbacks, by the callback's status.",
        labels=["status"],
    )
    counts = {r["status"]: r for r in rows}
    for status in ("pending", "delivered", "failed"):
        row = counts.get(status)
        callbacks.add_metric([status], float(row["callbacks"]) if row else 0.0)
        attempts.add_metric([status], float(row["attempts"]) if row else 0.0)
    return [callbacks, attempts]


def snapshot_metrics(snapshot: MetricsSnapshot) -> list[Metric]:
    """The Prometheus metric families of one database snapshot (pure), in exposition order."""
    return [
        *_outcome_families(snapshot.job_outcomes),
        *_failure_families(snapshot),
        *_duration_families(snapshot),
        *_queue_families(snapshot.queue),
        *_alert_families(snapshot.alerts_open),
        *_restart_families(snapshot.service_restarts),
        *_callback_families(snapshot.callbacks),
        *schedule_families(snapshot),
    ]


class DatabaseMetricsCollector(Collector):
    """Reads the metrics views at every scrape; a database outage shows as `..._up 0`."""

    def __init__(self, read: Callable[[], MetricsSnapshot]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        """The database's metric families, preceded by whether reading them worked."""
        up = GaugeMetricFamily(
            f"{PREFIX}_metrics_database_up", "1 if the metrics views could be read."
        )
        try:
            families = snapshot_metrics(self._read())
        except Exception:
            logger.exception("reading the metrics views failed")
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families


class RateLimitCollector(Collector):
    """This process's rate limiter at scrape time: falling back or not, and how often it did."""

    def __init__(self, limiter: Callable[[], RateLimiter | None]) -> None:
        self._limiter = limiter

    def collect(self) -> Iterator[Metric]:
        """The fallback gauge and counter (nothing for an app without a limiter)."""
        limiter = self._limiter()
        if limiter is None:
            return
        status = limiter.status()
        fallback = GaugeMetricFamily(
            f"{PREFIX}_rate_limit_local_fallback",
            "1 while Redis fails and this process counts rate limits on its own.",
        )
        fallback.add_metric([], 1.0 if status.fallback_since is not None else 0.0)
        fallbacks = CounterMetricFamily(
            f"{PREFIX}_rate_limit_fallbacks_total",
            "Times this process switched its rate limits from Redis to local counts.",
        )
        fallbacks.add_metric([], float(status.fallbacks))
        yield fallback
        yield fallbacks


def route_label(scope: Scope) -> str:
    """The matched route's path template, or 'unmatched'."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


class ResponseTimeMiddleware:
    """Observe each HTTP request's duration by route template, method and status."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time HTTP requests; pass anything else (lifespan, websockets) straight through."""
        if scope["type"] == "http":
            await self._timed(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request until the application returns (or raises: status 500)."""
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.histogram.labels(route_label(scope), scope.get("method", ""), str(status)).observe(
                time.perf_counter() - started
            )


def install_metrics(app: FastAPI) -> CollectorRegistry:
    """Give `app` its metrics registry (with the database collector) and the response-time
    middleware; GET /metrics (api/routes/metrics.py) exposes the registry.

    The registry is the app's own (not prometheus_client's global one), so several apps in
    one process never share or collide. The collectors read `app.state.store` and
    `app.state.limiter` at scrape time.
    """
    registry = CollectorRegistry()
    histogram = Histogram(
        f"{PREFIX}_api_request_duration_seconds",
        "API response time by route template, method and status.",
        labelnames=("route", "method", "status"),
        buckets=API_DURATION_BUCKETS,
        registry=registry,
    )

    def read() -> MetricsSnapshot:
        store = getattr(app.state, "store", None)
        if store is None:
            raise RuntimeError("the app has no job store yet")
        return read_metrics(store.pool)

    registry.register(DatabaseMetricsCollector(read))
    registry.register(RateLimitCollector(lambda: getattr(app.state, "limiter", None)))
    app.state.metrics_registry = registry
    app.add_middleware(ResponseTimeMiddleware, histogram=histogram)
    return registry
