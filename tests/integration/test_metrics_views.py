"""The metrics views (migration 20261125000500) over real jobs and job_events rows, and their
reading for /metrics (engine.db.metrics)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from dbfixtures import as_user, create_user, insert_job, insert_job_event, insert_workflow
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from engine.db.metrics import HistogramSeries, cumulative_histogram, read_metrics

BASE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
VIEWS = (
    "metrics_job_outcomes",
    "metrics_job_failures",
    "metrics_step_failures",
    "metrics_job_durations",
    "metrics_job_duration_by_workflow",
    "metrics_step_durations",
    "metrics_step_duration_by_transformer",
    "metrics_queue",
)


def at(seconds: float) -> datetime:
    """BASE plus `seconds`."""
    return BASE + timedelta(seconds=seconds)


def finished_job(
    db: psycopg.Connection[Any], user: str, wf: str, status: str, run_seconds: float
) -> str:
    """A job created at BASE, started one second later, finished `run_seconds` after that."""
    return insert_job(
        db,
        user,
        wf,
        status=status,
        created_at=BASE,
        started_at=at(1),
        completed_at=at(1 + run_seconds),
    )


@pytest.fixture
def world(db: psycopg.Connection[Any]) -> dict[str, Any]:
    """Two workflows with jobs in every status and step events with durations."""
    user = create_user(db)
    insert_workflow(db, "wf_a")
    insert_workflow(db, "wf_b")
    for seconds in (2, 4, 30):
        finished_job(db, user, "wf_a", "completed", seconds)
    timeout_job = finished_job(db, user, "wf_a", "failed", 10)
    insert_job_event(
        db,
        timeout_job,
        "status",
        status="failed",
        step_id="transcribe",
        detail={"kind": "timeout", "transformer_id": "gemini"},
    )
    config_job = insert_job(db, user, "wf_a", status="failed", created_at=BASE, completed_at=at(1))
    insert_job_event(db, config_job, "status", status="failed", detail={"kind": "config"})
    # A failed job with no failed event still counts, as 'unknown', at its current step.
    insert_job(
        db, user, "wf_a", status="failed", current_step_id="notify", created_at=BASE,
        started_at=at(1), completed_at=at(2),
    )  # fmt: skip
    now = datetime.now(UTC)
    insert_job(db, user, "wf_a", status="pending", created_at=now - timedelta(seconds=100))
    insert_job(db, user, "wf_a", status="pending", created_at=now - timedelta(seconds=10))
    insert_job(
        db,
        user,
        "wf_a",
        status="awaiting_retry",
        created_at=now - timedelta(seconds=500),
        next_retry_at=now - timedelta(seconds=60),
    )
    insert_job(
        db,
        user,
        "wf_a",
        status="awaiting_retry",
        created_at=now - timedelta(seconds=20),
        next_retry_at=now + timedelta(seconds=600),
    )
    insert_job(db, user, "wf_a", status="running", started_at=now)
    wf_b_job = finished_job(db, user, "wf_b", "completed", 8)

    def step(kind: str, step_id: str, transformer: str, ms: Any, error: str | None = None) -> None:
        detail: dict[str, Any] = {"transformer_id": transformer, "duration_ms": ms}
        if error:
            detail["kind"] = error
        insert_job_event(db, timeout_job, kind, step_id=step_id, attempt=1, detail=detail)

    step("step_succeeded", "download", "http-dl", 1500)
    step("step_failed", "transcribe", "gemini", 250, "timeout")
    step("step_failed", "transcribe", "gemini", 100, "timeout")
    step("step_failed", "transcribe", "gemini", 40, "server_error")
    step("step_succeeded", "download", "http-dl", "fast")  # not a number: left out
    insert_job_event(db, wf_b_job, "step_succeeded", step_id="x", detail={"transformer_id": "t"})
    return {"user": user, "timeout_job": timeout_job}


def rows(db: psycopg.Connection[Any], query: str) -> list[dict[str, Any]]:
    """Every row of `query` as dicts."""
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()


def test_job_outcomes_completion_and_failure_rate(
    db: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    """Counts per status and rates of finished jobs, per workflow."""
    by_wf = {r["workflow_id"]: r for r in rows(db, "select * from metrics_job_outcomes")}
    a = by_wf["wf_a"]
    assert (a["completed"], a["failed"], a["pending"], a["awaiting_retry"], a["running"]) == (
        3,
        3,
        2,
        2,
        1,
    )
    assert a["jobs"] == 11 and a["finished"] == 6
    assert a["completion_rate"] == pytest.approx(0.5)
    assert a["failure_rate"] == pytest.approx(0.5)
    b = by_wf["wf_b"]
    assert (b["completion_rate"], b["failure_rate"]) == (1.0, 0.0)


def test_job_failures_by_workflow_step_and_kind(
    db: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    """Each failed job counts once, under the step and kind of its failed event."""
    got = {
        (r["workflow_id"], r["step_id"], r["error_kind"]): (r["failed_jobs"], r["failure_rate"])
        for r in rows(db, "select * from metrics_job_failures")
    }
    assert got == {
        ("wf_a", "transcribe", "timeout"): (1, pytest.approx(1 / 6)),
        ("wf_a", None, "config"): (1, pytest.approx(1 / 6)),
        ("wf_a", "notify", "unknown"): (1, pytest.approx(1 / 6)),
    }


def test_step_failures_count_every_attempt(
    db: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    """Failed attempts per workflow, step, transformer and error kind."""
    got = {
        (r["workflow_id"], r["step_id"], r["transformer_id"], r["error_kind"]): r["failed_attempts"]
        for r in rows(db, "select * from metrics_step_failures")
    }
    assert got == {
        ("wf_a", "transcribe", "gemini", "timeout"): 2,
        ("wf_a", "transcribe", "gemini", "server_error"): 1,
    }


def test_average_job_duration_by_workflow(
    db: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    """Average, median and p95 over completed jobs' execution time; turnaround adds queueing."""
    by_wf = {
        r["workflow_id"]: r for r in rows(db, "select * from metrics_job_duration_by_workflow")
    }
    a = by_wf["wf_a"]
    assert a["completed_jobs"] == 3 and a["finished_jobs"] == 6
    assert a["avg_duration_seconds"] == pytest.approx(12.0)
    assert a["p50_duration_seconds"] == pytest.approx(4.0)
    assert a["avg_turnaround_seconds"] == pytest.approx(13.0)
    # Failed: 10 s, 1 s (never started: from creation), 1 s.
    assert a["avg_finished_duration_seconds"] == pytest.approx((2 + 4 + 30 + 10 + 1 + 1) / 6)
    assert by_wf["wf_b"]["avg_duration_seconds"] == pytest.approx(8.0)


def test_step_execution_time_by_transformer(
    db: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    """Attempts with a numeric duration, their outcomes and times, per transformer."""
    by_t = {
        r["transformer_id"]: r
        for r in rows(db, "select * from metrics_step_duration_by_transformer")
    }
    assert set(by_t) == {"http-dl", "gemini"}
    g = by_t["gemini"]
    assert (g["attempts"], g["succeeded"], g["failed"]) == (3, 0, 3)
    assert g["avg_seconds"] == pytest.approx((0.25 + 0.1 + 0.04) / 3)
    assert g["max_seconds"] == pytest.approx(0.25)
    assert by_t["http-dl"]["avg_seconds"] == pytest.approx(1.5)


def test_queue_length_and_oldest_age(db: psycopg.Connection[Any], world: dict[str, Any]) -> None:
    """Both queue statuses, their oldest job's age and overdue retries."""
    by_status = {r["status"]: r for r in rows(db, "select * from metrics_queue")}
    assert by_status["pending"]["jobs"] == 2
    assert 100 <= by_status["pending"]["oldest_age_seconds"] < 3600
    retry = by_status["awaiting_retry"]
    assert retry["jobs"] == 2 and retry["overdue_jobs"] == 1
    assert 60 <= retry["max_overdue_seconds"] < 3600


def test_empty_queue_reads_zero(db: psycopg.Connection[Any]) -> None:
    """With no jobs the queue view still has both statuses, at zero."""
    got = {
        r["status"]: (r["jobs"], r["oldest_age_seconds"], r["overdue_jobs"])
        for r in rows(db, "select * from metrics_queue")
    }
    assert got == {"pending": (0, 0.0, 0), "awaiting_retry": (0, 0.0, 0)}


@pytest.mark.parametrize("view", VIEWS)
def test_views_are_closed_to_api_roles(db: psycopg.Connection[Any], view: str) -> None:
    """Metrics are operator data: a signed-in user (or anon) cannot select from any view."""
    user = create_user(db)
    for role in ("authenticated", "anon"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(db, user, role):
            db.execute(f"select * from public.{view}")


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool[psycopg.Connection[dict[str, Any]]]]:
    """A small pool on the test database, as the engine opens it."""
    with ConnectionPool(
        database_url,
        min_size=1,
        max_size=2,
        kwargs={"row_factory": dict_row, "autocommit": True},
        connection_class=psycopg.Connection[dict[str, Any]],
    ) as p:
        yield p


def test_read_metrics_histograms(
    pool: ConnectionPool[psycopg.Connection[dict[str, Any]]], world: dict[str, Any]
) -> None:
    """Duration histograms are cumulative per `le`, with exact count and sum, from SQL."""
    snap = read_metrics(pool, job_bounds=(3.0, 10.0), step_bounds=(0.1, 1.0))
    jobs = {s.labels: s for s in snap.job_durations}
    completed = jobs[("wf_a", "completed")]
    assert completed.buckets == [("3.0", 1), ("10.0", 2), ("+Inf", 3)]
    assert completed.count == 3
    assert completed.total == pytest.approx(36.0)
    # 10 s lands in le=10 (bounds are inclusive, like Prometheus').
    assert jobs[("wf_a", "failed")].buckets == [("3.0", 2), ("10.0", 3), ("+Inf", 3)]
    steps = {s.labels: s for s in snap.step_durations}
    assert steps[("gemini", "failed")].buckets == [("0.1", 2), ("1.0", 3), ("+Inf", 3)]
    assert steps[("http-dl", "succeeded")].buckets == [("0.1", 0), ("1.0", 0), ("+Inf", 1)]
    assert {r["status"] for r in snap.queue} == {"pending", "awaiting_retry"}
    assert snap.alerts_open == []


@pytest.mark.parametrize(
    ("rows_in", "expected"),
    [
        ([], []),
        (
            [
                {"k": "a", "bucket": 0, "observations": 2, "total_seconds": 1.0},
                {"k": "a", "bucket": 2, "observations": 1, "total_seconds": 9.0},
                {"k": None, "bucket": 1, "observations": 4, "total_seconds": 8.0},
                {"k": "a", "bucket": 7, "observations": 1, "total_seconds": 90.0},  # clamped
            ],
            [
                HistogramSeries(("",), [("1.0", 0), ("5.0", 4), ("+Inf", 4)], 4, 8.0),
                HistogramSeries(("a",), [("1.0", 2), ("5.0", 2), ("+Inf", 4)], 4, 100.0),
            ],
        ),
    ],
)
def test_cumulative_histogram(
    rows_in: list[dict[str, Any]], expected: list[HistogramSeries]
) -> None:
    """Per-bucket counts become cumulative `le` buckets; None labels read as ''."""
    assert cumulative_histogram(rows_in, ("k",), (1.0, 5.0)) == expected
