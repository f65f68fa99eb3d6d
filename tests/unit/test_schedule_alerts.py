"""The schedule_failing alert rule (pure): a schedule whose last jobs failed too many times in
a row alerts, one alert per schedule."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from engine.jobs.alerts import (
    AlertKind,
    AlertThresholds,
    FailingSchedule,
    Observations,
    Severity,
    evaluate,
    evaluated_kinds,
    schedule_alerts,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("failures", "threshold", "alert"),
    [(0, 3, False), (2, 3, False), (3, 3, True), (7, 3, True), (1, 1, True)],
)
def test_schedule_failing_rule(failures: int, threshold: int, alert: bool) -> None:
    """At the threshold of failures in a row the schedule alerts (critical), naming it, its
    workflow and its last job."""
    found = schedule_alerts(
        [FailingSchedule("nightly", "wf", failures, "job-1")],
        AlertThresholds(schedule_failures=threshold),
    )
    assert bool(found) is alert
    if alert:
        [candidate] = found
        assert candidate.key == ("schedule_failing", "nightly")
        assert candidate.severity is Severity.CRITICAL
        assert f"last {failures} jobs failed" in candidate.message
        assert candidate.detail["last_job_id"] == "job-1"


def test_evaluate_includes_failing_schedules_and_decides_their_kind() -> None:
    """evaluate() opens one alert per failing schedule; the kind is always decided, so a
    schedule that recovered has its alert resolved."""
    observations = Observations(
        now=NOW,
        failing_schedules=[FailingSchedule("b", "wf", 4), FailingSchedule("a", "wf", 3)],
    )
    found = evaluate(observations, AlertThresholds())
    assert [c.key for c in found] == [("schedule_failing", "a"), ("schedule_failing", "b")]
    assert AlertKind.SCHEDULE_FAILING in evaluated_kinds(Observations(now=NOW))


def test_the_threshold_is_alert_schedule_failures() -> None:
    """ALERT_SCHEDULE_FAILURES sets the threshold (default 3)."""
    assert AlertThresholds().schedule_failures == 3
    settings = SimpleNamespace(alert_schedule_failures=5)
    assert AlertThresholds.from_settings(settings).schedule_failures == 5
