"""The maintenance backfill through real PostgreSQL and Prefect: a schedule's latest due firing
that no fire-schedule run made (its run dropped by Prefect, or crashed) gets exactly one job,
as its run would have made it, with its run-workflow flow run started; a second pass, or two
passes at once, make no other; a firing its own run made is left alone; a firing the
catch-up rule would miss, a paused schedule and one with nothing due yet get nothing."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from flow_services import add_workflow
from prefect.client.orchestration import get_client
from warm_workers import unique_pool

from engine.db.schedule_firings import ScheduleFirings
from engine.db.store import JobStore
from engine.jobs.schedule_firing import firing_key
from engine.settings import get_settings
from flows.schedule_backfill import run_schedule_backfill
from flows.schedules import fire
from worker.deployments import ensure_warm_deployment

log = logging.getLogger("test.schedule_backfill")
HOUR = 3600.0


def hourly_schedule(
    db: psycopg.Connection[Any],
    user_id: str | None,
    *,
    age: timedelta,
    catch_up: str = "latest",
    active: bool = True,
    name: str | None = None,
) -> tuple[str, datetime]:
    """An hourly interval schedule created `age` ago (created_at is its anchor); its id and
    its latest due firing (created_at + whole hours, the anchor itself excluded)."""
    created = datetime.now(UTC).replace(microsecond=0) - age
    row = db.execute(
        "insert into public.schedules (user_id, name, workflow_id, kind, interval_seconds,"
        " input_data, catch_up, active, created_at, updated_at)"
        " values (%s, %s, 'backfilled_wf', 'interval', %s, %s, %s, %s, %s, %s) returning id",
        [user_id, name, HOUR, json.dumps({"n": 1}), catch_up, active, created, created],
    ).fetchone()
    assert row is not None
    return str(row[0]), created + timedelta(seconds=HOUR * (age // timedelta(seconds=HOUR)))


def jobs_of(db: psycopg.Connection[Any], schedule_id: str) -> list[tuple[str, str]]:
    """(idempotency key, job id) of every job of the schedule."""
    rows = db.execute(
        "select idempotency_key, id::text from public.jobs where idempotency_key like %s"
        " order by idempotency_key",
        [f"schedule:{schedule_id}:%"],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


@pytest.fixture
def run_deployment(monkeypatch: pytest.MonkeyPatch) -> str:
    """A run-workflow deployment of its own (no worker: its flow runs stay Scheduled)."""
    pool = unique_pool()
    name = ensure_warm_deployment(pool, f"warm-{pool}")
    monkeypatch.setenv("PREFECT_DEPLOYMENT", name)
    get_settings.cache_clear()
    return name


def test_a_due_firing_without_a_job_gets_exactly_one_from_the_maintenance_pass(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, run_deployment: str
) -> None:
    """One pass makes the lost latest due firing of a user's schedule (key
    schedule:<id>:<time>, owner the user, its flow run created in Prefect), counted
    `backfilled`; a firing fire-schedule made is not duplicated, nor one whose run made
    the job and crashed before recording it; catch_up 'none' past the
    grace, a paused schedule and one whose only firing is its anchor get nothing. A second
    pass makes nothing."""
    add_workflow(db, "backfilled_wf", {"steps": []})
    firings = ScheduleFirings(flow_store)
    lost, lost_at = hourly_schedule(db, user_id, age=timedelta(minutes=90))
    made, made_at = hourly_schedule(db, None, age=timedelta(minutes=90), name="hourly_op")
    missed, _ = hourly_schedule(db, user_id, age=timedelta(minutes=90), catch_up="none")
    paused, _ = hourly_schedule(db, user_id, age=timedelta(minutes=90), active=False)
    fresh, _ = hourly_schedule(db, user_id, age=timedelta(seconds=0))
    # A run that made its job and crashed before recording it on the row.
    half, half_at = hourly_schedule(db, user_id, age=timedelta(minutes=90))
    half_row = firings.schedule(half)
    assert half_row is not None
    half_job = firings.create_job(half_row, half_at)
    # The operator schedule's own run made its firing, on time.
    assert fire(made, made_at, now=made_at + timedelta(seconds=1))["outcome"] == "created"
    made_jobs = jobs_of(db, made)

    first = run_schedule_backfill(flow_store, get_settings(), log=log)
    [backfilled] = first["backfilled"]
    assert (backfilled["schedule_id"], backfilled["outcome"]) == (lost, "backfilled")
    [(key, job_id)] = jobs_of(db, lost)
    assert key == firing_key(lost, lost_at) and backfilled["job_id"] == job_id
    job = flow_store.get_job(job_id)
    assert str(job["user_id"]) == user_id and job["input_data"] == {"n": 1}
    assert job["prefect_flow_run_id"] is not None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(job["prefect_flow_run_id"])
        assert str(run.parameters.get("job_id")) == job_id
    row = db.execute(
        "select last_fired_for, last_job_id::text from public.schedules where id = %s", [lost]
    ).fetchone()
    assert row == (lost_at, job_id)
    assert jobs_of(db, made) == made_jobs
    assert [jobs_of(db, s) for s in (missed, paused, fresh)] == [[], [], []]
    assert jobs_of(db, half) == [(firing_key(half, half_at), half_job.id)]
    counts = firings.counts()
    assert (counts["backfilled"], counts["created"], counts["duplicate"]) == (1, 1, 0)

    second = run_schedule_backfill(flow_store, get_settings(), log=log)
    assert second["backfilled"] == [] and second["checked"] == first["checked"]
    assert len(jobs_of(db, lost)) == 1 and jobs_of(db, made) == made_jobs
    assert firings.counts()["backfilled"] == 1


def test_two_passes_at_once_make_one_job(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, run_deployment: str
) -> None:
    """Two maintenance passes racing over the same lost firing: one job (the key's unique
    index decides), counted `backfilled` once."""
    add_workflow(db, "backfilled_wf", {"steps": []})
    lost, lost_at = hourly_schedule(db, user_id, age=timedelta(minutes=70))
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def one_pass() -> None:
        barrier.wait(timeout=30)
        results.append(run_schedule_backfill(flow_store, get_settings(), log=log))

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2
    assert [k for k, _ in jobs_of(db, lost)] == [firing_key(lost, lost_at)]
    assert sum(len(r["backfilled"]) for r in results) == 1
    assert ScheduleFirings(flow_store).counts()["backfilled"] == 1
