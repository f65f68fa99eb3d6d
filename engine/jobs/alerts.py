"""Alert rules (pure): from observed rows and numbers to the alerts that should be open now.

The maintenance flow gathers `Observations` (engine.db.alert_store), calls `evaluate`, and the
store reconciles the result with the alerts table: new (kind, subject) pairs open, present ones
are refreshed, open ones of an evaluated kind that are no longer wanted resolve.

Rules (thresholds from settings, see `AlertThresholds.from_settings`):
- high_failure_rate       per workflow: failed / finished jobs in the window >= threshold, once at
                          least `failure_rate_min_jobs` jobs finished in the window;
- stalled_running         per workflow: jobs `running` with no sign of life (heartbeat or update)
                          for longer than `stalled_running_seconds`;
- stalled_awaiting_retry  per workflow: jobs `awaiting_retry` whose next_retry_at is more than
                          `stalled_retry_grace_seconds` in the past (nobody picked the retry up);
- slow_queue              the oldest `pending` job has waited longer than `queue_age_seconds`
                          (a delayed job waits from its `scheduled_for`: healthy until then);
- slow_maintenance        the maintenance pass took longer than `maintenance_seconds`;
- config_error            per workflow: workflow/transformer configuration lookup failed in the
                          window (`config_error` events, and step failures of kind `config`);
- schedule_failing        per schedule: its last `schedule_failures` jobs failed in a row
                          (schedules.consecutive_failures; a completed job resolves it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

#: How many job ids an alert's detail lists (the count is always exact).
MAX_LISTED_JOBS = 20


class AlertKind(StrEnum):
    """What an alert is about; with the subject, its deduplication key."""

    HIGH_FAILURE_RATE = "high_failure_rate"
    STALLED_RUNNING = "stalled_running"
    STALLED_AWAITING_RETRY = "stalled_awaiting_retry"
    SLOW_QUEUE = "slow_queue"
    SLOW_MAINTENANCE = "slow_maintenance"
    CONFIG_ERROR = "config_error"
    SCHEDULE_FAILING = "schedule_failing"


class Severity(StrEnum):
    """How urgent an alert is (the alerts.severity CHECK)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY: dict[AlertKind, Severity] = {
    AlertKind.HIGH_FAILURE_RATE: Severity.CRITICAL,
    AlertKind.STALLED_RUNNING: Severity.WARNING,
    AlertKind.STALLED_AWAITING_RETRY: Severity.WARNING,
    AlertKind.SLOW_QUEUE: Severity.WARNING,
    AlertKind.SLOW_MAINTENANCE: Severity.WARNING,
    AlertKind.CONFIG_ERROR: Severity.CRITICAL,
    AlertKind.SCHEDULE_FAILING: Severity.CRITICAL,
}


@dataclass(frozen=True)
class AlertThresholds:
    """Every number the rules compare against (seconds, fractions, counts)."""

    failure_rate: float = 0.5
    failure_rate_min_jobs: int = 5
    failure_window_seconds: float = 3600.0
    stalled_running_seconds: float = 1800.0
    stalled_retry_grace_seconds: float = 300.0
    queue_age_seconds: float = 300.0
    maintenance_seconds: float = 60.0
    config_error_window_seconds: float = 3600.0
    schedule_failures: int = 3

    @classmethod
    def from_settings(cls, settings: object) -> AlertThresholds:
        """Thresholds from `ALERT_*` settings; a setting that is absent keeps its default."""
        defaults = cls()
        values: dict[str, Any] = {}
        for name, setting in _SETTING_NAMES.items():
            default = getattr(defaults, name)
            values[name] = type(default)(getattr(settings, setting, default))
        return cls(**values)


#: The setting that holds each threshold.
_SETTING_NAMES = {
    "failure_rate": "alert_failure_rate_threshold",
    "failure_rate_min_jobs": "alert_failure_rate_min_jobs",
    "failure_window_seconds": "alert_failure_rate_window_seconds",
    "stalled_running_seconds": "alert_stalled_running_seconds",
    "stalled_retry_grace_seconds": "alert_stalled_retry_grace_seconds",
    "queue_age_seconds": "alert_queue_age_seconds",
    "maintenance_seconds": "alert_maintenance_seconds",
    "config_error_window_seconds": "alert_config_error_window_seconds",
    "schedule_failures": "alert_schedule_failures",
}


# -- observations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowOutcomes:
    """Jobs of one workflow that finished inside the failure-rate window."""

    workflow_id: str
    finished: int
    failed: int


@dataclass(frozen=True)
class ActiveJob:
    """A running or awaiting_retry job that may be stalled.

    `last_activity_at` is the newest sign of life (heartbeat, else last update).
    """

    job_id: str
    workflow_id: str
    status: str
    last_activity_at: datetime
    next_retry_at: datetime | None = None
    #: The job is at a wait step (jobs.waiting_for set), healthy until `wait_deadline`.
    waiting: bool = False
    wait_deadline: datetime | None = None


@dataclass(frozen=True)
class ConfigErrors:
    """Configuration lookup errors of one workflow inside the window."""

    workflow_id: str
    errors: int
    last_at: datetime
    last_job_id: str | None = None
    last_message: str | None = None


@dataclass(frozen=True)
class FailingSchedule:
    """A schedule whose last jobs failed `consecutive_failures` times in a row."""

    schedule: str
    workflow_id: str
    consecutive_failures: int
    last_job_id: str | None = None


@dataclass(frozen=True)
class Observations:
    """Everything the rules look at, gathered at `now` (database time)."""

    now: datetime
    outcomes: Sequence[WorkflowOutcomes] = ()
    active_jobs: Sequence[ActiveJob] = ()
    pending_jobs: int = 0
    #: Since when the oldest pending job could have started: its creation, or a delayed
    #: job's scheduled_for. Delayed jobs whose time has not come are in neither number.
    oldest_pending_created_at: datetime | None = None
    config_errors: Sequence[ConfigErrors] = ()
    #: Schedules at or above the consecutive-failures threshold.
    failing_schedules: Sequence[FailingSchedule] = ()
    #: Duration of the current maintenance pass; None when not measured (rule not evaluated).
    maintenance_seconds: float | None = None


@dataclass(frozen=True)
class AlertCandidate:
    """An alert that should be open: its key, severity, text and machine-readable detail."""

    kind: AlertKind
    subject: str
    severity: Severity
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """The deduplication key (kind, subject)."""
        return (self.kind.value, self.subject)


def _candidate(kind: AlertKind, subject: str, message: str, **detail: Any) -> AlertCandidate:
    return AlertCandidate(kind, subject, SEVERITY[kind], message, detail)


def _age(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds()


# -- rules ----------------------------------------------------------------------------------


def failure_rate_alerts(
    outcomes: Iterable[WorkflowOutcomes], t: AlertThresholds
) -> list[AlertCandidate]:
    """One alert per workflow whose failure rate in the window reaches the threshold."""
    alerts: list[AlertCandidate] = []
    for o in outcomes:
        if o.finished <= 0 or o.finished < t.failure_rate_min_jobs:
            continue
        rate = o.failed / o.finished
        if rate >= t.failure_rate:
            alerts.append(
                _candidate(
                    AlertKind.HIGH_FAILURE_RATE,
                    o.workflow_id,
                    f"workflow '{o.workflow_id}': {o.failed} of {o.finished} jobs failed in the "
                    f"last {t.failure_window_seconds:g} s ({rate:.0%}, threshold "
                    f"{t.failure_rate:.0%})",
                    workflow_id=o.workflow_id,
                    failed=o.failed,
                    finished=o.finished,
                    failure_rate=round(rate, 4),
                    threshold=t.failure_rate,
                    window_seconds=t.failure_window_seconds,
                )
            )
    return alerts


def is_stalled(job: ActiveJob, now: datetime, t: AlertThresholds) -> bool:
    """Whether a running job went silent, or an awaiting_retry job's retry is long overdue.

    An awaiting_retry job without next_retry_at falls back to the running rule. A job at a
    wait step is healthy until its deadline (none: as long as it waits); past it by the
    retry grace, maintenance did not act on it.
    """
    if job.waiting:
        if job.wait_deadline is None:
            return False
        return _age(now, job.wait_deadline) > t.stalled_retry_grace_seconds
    if job.status == "awaiting_retry" and job.next_retry_at is not None:
        return _age(now, job.next_retry_at) > t.stalled_retry_grace_seconds
    if job.status in ("running", "awaiting_retry"):
        return _age(now, job.last_activity_at) > t.stalled_running_seconds
    return False


def stalled_job_alerts(
    jobs: Iterable[ActiveJob], now: datetime, t: AlertThresholds
) -> list[AlertCandidate]:
    """One alert per (workflow, status) that has stalled jobs, listing the oldest ones."""
    groups: dict[tuple[str, str], list[ActiveJob]] = {}
    for job in jobs:
        if is_stalled(job, now, t):
            groups.setdefault((job.workflow_id, job.status), []).append(job)
    alerts: list[AlertCandidate] = []
    for (workflow_id, status), stalled in sorted(groups.items()):
        stalled.sort(key=lambda j: (j.last_activity_at, j.job_id))
        if status == "awaiting_retry":
            kind = AlertKind.STALLED_AWAITING_RETRY
            what = (
                f"retry overdue by more than {t.stalled_retry_grace_seconds:g} s"
                if any(j.next_retry_at is not None for j in stalled)
                else f"no activity for more than {t.stalled_running_seconds:g} s"
            )
        else:
            kind = AlertKind.STALLED_RUNNING
            what = f"no activity for more than {t.stalled_running_seconds:g} s"
        oldest = stalled[0]
        alerts.append(
            _candidate(
                kind,
                workflow_id,
                f"workflow '{workflow_id}': {len(stalled)} job(s) stalled in '{status}' ({what})",
                workflow_id=workflow_id,
                status=status,
                jobs=len(stalled),
                job_ids=[j.job_id for j in stalled[:MAX_LISTED_JOBS]],
                oldest_activity_at=oldest.last_activity_at.isoformat(),
                oldest_silent_seconds=round(_age(now, oldest.last_activity_at), 1),
            )
        )
    return alerts


def queue_alerts(
    pending_jobs: int,
    oldest_pending_created_at: datetime | None,
    now: datetime,
    t: AlertThresholds,
) -> list[AlertCandidate]:
    """An alert when the oldest pending job has waited longer than the threshold (counted
    from its scheduled_for for a delayed job, see Observations)."""
    if oldest_pending_created_at is None or pending_jobs <= 0:
        return []
    age = _age(now, oldest_pending_created_at)
    if age <= t.queue_age_seconds:
        return []
    return [
        _candidate(
            AlertKind.SLOW_QUEUE,
            "pending",
            f"the oldest pending job has waited {age:.0f} s (threshold {t.queue_age_seconds:g} s;"
            f" {pending_jobs} pending)",
            pending_jobs=pending_jobs,
            oldest_age_seconds=round(age, 1),
            threshold_seconds=t.queue_age_seconds,
        )
    ]


def maintenance_alerts(seconds: float | None, t: AlertThresholds) -> list[AlertCandidate]:
    """An alert when the maintenance pass took longer than the threshold."""
    if seconds is None or seconds <= t.maintenance_seconds:
        return []
    return [
        _candidate(
            AlertKind.SLOW_MAINTENANCE,
            "maintenance",
            f"the maintenance pass took {seconds:.1f} s (threshold {t.maintenance_seconds:g} s)",
            duration_seconds=round(seconds, 3),
            threshold_seconds=t.maintenance_seconds,
        )
    ]


def config_error_alerts(errors: Iterable[ConfigErrors], t: AlertThresholds) -> list[AlertCandidate]:
    """One alert per workflow with configuration lookup errors inside the window."""
    alerts: list[AlertCandidate] = []
    for e in errors:
        if e.errors <= 0:
            continue
        alerts.append(
            _candidate(
                AlertKind.CONFIG_ERROR,
                e.workflow_id,
                f"workflow '{e.workflow_id}': {e.errors} configuration lookup error(s) in the "
                f"last {t.config_error_window_seconds:g} s"
                + (f"; last: {e.last_message}" if e.last_message else ""),
                workflow_id=e.workflow_id,
                errors=e.errors,
                last_at=e.last_at.isoformat(),
                last_job_id=e.last_job_id,
                window_seconds=t.config_error_window_seconds,
            )
        )
    return alerts


def schedule_alerts(
    schedules: Iterable[FailingSchedule], t: AlertThresholds
) -> list[AlertCandidate]:
    """One alert per schedule whose jobs failed `schedule_failures` times in a row (resolved
    by its next completed job)."""
    return [
        _candidate(
            AlertKind.SCHEDULE_FAILING,
            s.schedule,
            f"schedule '{s.schedule}' (workflow '{s.workflow_id}'): its last "
            f"{s.consecutive_failures} jobs failed",
            workflow_id=s.workflow_id,
            consecutive_failures=s.consecutive_failures,
            last_job_id=s.last_job_id,
            threshold=t.schedule_failures,
        )
        for s in schedules
        if s.consecutive_failures >= t.schedule_failures
    ]


def evaluated_kinds(observations: Observations) -> frozenset[AlertKind]:
    """The kinds this evaluation decides about; open alerts of other kinds stay untouched.

    slow_maintenance is only decided when the pass duration was measured.
    """
    kinds = set(AlertKind)
    if observations.maintenance_seconds is None:
        kinds.discard(AlertKind.SLOW_MAINTENANCE)
    return frozenset(kinds)


def evaluate(observations: Observations, t: AlertThresholds) -> list[AlertCandidate]:
    """Every alert that should be open given the observations, in a stable order."""
    now = observations.now
    alerts = [
        *failure_rate_alerts(observations.outcomes, t),
        *stalled_job_alerts(observations.active_jobs, now, t),
        *queue_alerts(observations.pending_jobs, observations.oldest_pending_created_at, now, t),
        *maintenance_alerts(observations.maintenance_seconds, t),
        *config_error_alerts(observations.config_errors, t),
        *schedule_alerts(observations.failing_schedules, t),
    ]
    return sorted(alerts, key=lambda a: a.key)
