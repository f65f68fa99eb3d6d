"""The alert rules (engine.jobs.alerts): tables of observations and the alerts they must open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from engine.jobs.alerts import (
    MAX_LISTED_JOBS,
    ActiveJob,
    AlertKind,
    AlertThresholds,
    ConfigErrors,
    Observations,
    Severity,
    WorkflowOutcomes,
    config_error_alerts,
    evaluate,
    evaluated_kinds,
    failure_rate_alerts,
    is_stalled,
    maintenance_alerts,
    queue_alerts,
    stalled_job_alerts,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
T = AlertThresholds(
    failure_rate=0.5,
    failure_rate_min_jobs=4,
    failure_window_seconds=3600,
    stalled_running_seconds=600,
    stalled_retry_grace_seconds=120,
    queue_age_seconds=300,
    maintenance_seconds=30,
    config_error_window_seconds=3600,
)


def ago(seconds: float) -> datetime:
    """A time `seconds` before NOW (negative: in the future)."""
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("finished", "failed", "alert"),
    [
        (0, 0, False),  # nothing finished: no rate
        (3, 3, False),  # below the minimum sample
        (4, 1, False),  # 25 %
        (4, 2, True),  # exactly the threshold counts
        (10, 9, True),
        (10, 4, False),
    ],
)
def test_failure_rate_rule(finished: int, failed: int, alert: bool) -> None:
    """A workflow alerts once enough jobs finished and failed/finished reaches the threshold."""
    alerts = failure_rate_alerts([WorkflowOutcomes("wf", finished, failed)], T)
    assert bool(alerts) is alert
    if alert:
        (a,) = alerts
        assert (a.kind, a.subject, a.severity) == (
            AlertKind.HIGH_FAILURE_RATE,
            "wf",
            Severity.CRITICAL,
        )
        assert a.detail["failed"] == failed and a.detail["finished"] == finished
        assert a.detail["failure_rate"] == round(failed / finished, 4)


def test_failure_rate_is_per_workflow() -> None:
    """Each workflow is judged on its own jobs."""
    alerts = failure_rate_alerts(
        [WorkflowOutcomes("bad", 5, 5), WorkflowOutcomes("good", 50, 1)], T
    )
    assert [a.subject for a in alerts] == ["bad"]


@pytest.mark.parametrize(
    ("status", "silent_for", "retry_due_ago", "stalled"),
    [
        ("running", 599, None, False),
        ("running", 601, None, True),
        # awaiting_retry: judged on next_retry_at, however long ago the job was updated
        ("awaiting_retry", 5000, -60, False),  # retry still in the future
        ("awaiting_retry", 5000, 119, False),  # overdue, within the grace
        ("awaiting_retry", 10, 121, True),  # overdue beyond the grace
        # awaiting_retry without next_retry_at falls back to the running rule
        ("awaiting_retry", 601, None, True),
        ("awaiting_retry", 599, None, False),
        ("pending", 99999, None, False),  # queue rule, not stall rule
        ("completed", 99999, None, False),
    ],
)
def test_is_stalled(
    status: str, silent_for: float, retry_due_ago: float | None, stalled: bool
) -> None:
    """Running: silent too long. Awaiting retry: next_retry_at well in the past."""
    job = ActiveJob(
        "j1",
        "wf",
        status,
        last_activity_at=ago(silent_for),
        next_retry_at=None if retry_due_ago is None else ago(retry_due_ago),
    )
    assert is_stalled(job, NOW, T) is stalled


def test_stalled_jobs_grouped_per_workflow_and_status() -> None:
    """One alert per (workflow, status), listing its stalled jobs oldest first."""
    jobs = [
        ActiveJob("r-new", "wf1", "running", ago(700)),
        ActiveJob("r-old", "wf1", "running", ago(900)),
        ActiveJob("r-fine", "wf1", "running", ago(10)),
        ActiveJob("a1", "wf1", "awaiting_retry", ago(1000), next_retry_at=ago(500)),
        ActiveJob("r2", "wf2", "running", ago(1000)),
    ]
    alerts = stalled_job_alerts(jobs, NOW, T)
    summary = [(a.kind, a.subject, a.detail["job_ids"]) for a in alerts]
    assert summary == [
        (AlertKind.STALLED_AWAITING_RETRY, "wf1", ["a1"]),
        (AlertKind.STALLED_RUNNING, "wf1", ["r-old", "r-new"]),
        (AlertKind.STALLED_RUNNING, "wf2", ["r2"]),
    ]
    assert alerts[1].detail["jobs"] == 2
    assert alerts[1].detail["oldest_silent_seconds"] == 900


def test_stalled_alert_lists_a_bounded_number_of_jobs() -> None:
    """The count is exact; the listed ids are capped."""
    jobs = [ActiveJob(f"j{i:03}", "wf", "running", ago(1000 + i)) for i in range(50)]
    (alert,) = stalled_job_alerts(jobs, NOW, T)
    assert alert.detail["jobs"] == 50
    assert len(alert.detail["job_ids"]) == MAX_LISTED_JOBS
    assert alert.detail["job_ids"][0] == "j049"  # oldest first


@pytest.mark.parametrize(
    ("pending", "oldest_age", "alert"),
    [
        (0, None, False),
        (3, 299, False),
        (3, 301, True),
        (0, 301, False),  # stale timestamp but nothing pending
    ],
)
def test_queue_rule(pending: int, oldest_age: float | None, alert: bool) -> None:
    """The queue alerts when its oldest pending job waited longer than the threshold."""
    oldest = None if oldest_age is None else ago(oldest_age)
    alerts = queue_alerts(pending, oldest, NOW, T)
    assert bool(alerts) is alert
    if alert:
        assert (alerts[0].kind, alerts[0].subject) == (AlertKind.SLOW_QUEUE, "pending")
        assert alerts[0].detail["pending_jobs"] == pending


@pytest.mark.parametrize(
    ("seconds", "alert"), [(None, False), (0.5, False), (30.0, False), (30.1, True)]
)
def test_maintenance_rule(seconds: float | None, alert: bool) -> None:
    """A maintenance pass slower than the threshold alerts; an unmeasured one never does."""
    alerts = maintenance_alerts(seconds, T)
    assert bool(alerts) is alert
    if alert:
        assert (alerts[0].kind, alerts[0].subject) == (AlertKind.SLOW_MAINTENANCE, "maintenance")


@pytest.mark.parametrize(
    ("errors", "message", "alert", "text"),
    [
        (0, None, False, None),
        (1, None, True, "1 configuration lookup error(s)"),
        (3, "steps[0].transformer: unknown transformer 'x'", True, "unknown transformer 'x'"),
    ],
)
def test_config_error_rule(errors: int, message: str | None, alert: bool, text: str) -> None:
    """Any configuration lookup error in the window opens a critical alert for the workflow."""
    alerts = config_error_alerts(
        [ConfigErrors("wf", errors, ago(5), last_job_id="j9", last_message=message)], T
    )
    assert bool(alerts) is alert
    if alert:
        (a,) = alerts
        assert (a.kind, a.subject, a.severity) == (AlertKind.CONFIG_ERROR, "wf", Severity.CRITICAL)
        assert text in a.message
        assert a.detail["last_job_id"] == "j9"


@pytest.mark.parametrize(
    ("maintenance_seconds", "has_maintenance_kind"), [(None, False), (0.0, True), (99.0, True)]
)
def test_evaluated_kinds(maintenance_seconds: float | None, has_maintenance_kind: bool) -> None:
    """slow_maintenance is decided (opened or resolved) only when the pass was measured."""
    kinds = evaluated_kinds(Observations(now=NOW, maintenance_seconds=maintenance_seconds))
    assert (AlertKind.SLOW_MAINTENANCE in kinds) is has_maintenance_kind
    assert set(AlertKind) - {AlertKind.SLOW_MAINTENANCE} <= kinds


def test_evaluate_combines_every_rule_in_key_order() -> None:
    """evaluate returns each rule's alerts, unique per (kind, subject), sorted by that key."""
    observations = Observations(
        now=NOW,
        outcomes=[WorkflowOutcomes("wf", 4, 4)],
        active_jobs=[ActiveJob("j", "wf", "running", ago(601))],
        pending_jobs=1,
        oldest_pending_created_at=ago(301),
        config_errors=[ConfigErrors("wf", 1, ago(1))],
        maintenance_seconds=31.0,
    )
    keys = [a.key for a in evaluate(observations, T)]
    assert keys == [
        ("config_error", "wf"),
        ("high_failure_rate", "wf"),
        ("slow_maintenance", "maintenance"),
        ("slow_queue", "pending"),
        ("stalled_running", "wf"),
    ]
    assert len(set(keys)) == len(keys)


def test_evaluate_quiet_system_opens_nothing() -> None:
    """A healthy system: no alert."""
    observations = Observations(
        now=NOW,
        outcomes=[WorkflowOutcomes("wf", 100, 1)],
        active_jobs=[ActiveJob("j", "wf", "running", ago(5))],
        pending_jobs=2,
        oldest_pending_created_at=ago(3),
        maintenance_seconds=0.2,
    )
    assert evaluate(observations, T) == []


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (SimpleNamespace(), AlertThresholds()),
        (
            SimpleNamespace(
                alert_failure_rate_threshold=0.2,
                alert_failure_rate_min_jobs=1,
                alert_failure_rate_window_seconds=60,
                alert_stalled_running_seconds=10,
                alert_stalled_retry_grace_seconds=5,
                alert_queue_age_seconds=7,
                alert_maintenance_seconds=3,
                alert_config_error_window_seconds=9,
            ),
            AlertThresholds(0.2, 1, 60, 10, 5, 7, 3, 9),
        ),
        (SimpleNamespace(alert_queue_age_seconds="42"), AlertThresholds(queue_age_seconds=42)),
    ],
)
def test_thresholds_from_settings(settings: object, expected: AlertThresholds) -> None:
    """Every threshold is read from its ALERT_* setting; missing settings keep the default."""
    assert AlertThresholds.from_settings(settings) == expected
