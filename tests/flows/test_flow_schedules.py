"""Schedule firings through real Prefect and PostgreSQL: each firing of a schedule creates
exactly one job (key `schedule:<id>:<scheduled time>`), a second firing for the same time
finds it, a firing past the grace is missed unless it is the latest due one, a paused
schedule fires nothing, and each job's end is recorded on the schedule row."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from dbfixtures import create_user
from flow_services import add_workflow, delay_transformer
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.states import Scheduled
from waiting import wait_until
from warm_workers import unique_pool, warm_worker

from engine.db.job_writes import Transition
from engine.db.schedule_firings import ScheduleFirings
from engine.db.store import JobStore
from engine.jobs.schedule_firing import firing_key
from engine.jobs.transitions import JobStatus
from engine.settings import get_settings
from flows.alerting import run_alerting
from flows.schedules import fire
from worker.deployments import ensure_warm_deployment
from worker.schedule_deployment import ensure_schedule_deployment

PERIOD = 2.0
FIRINGS = 4


def insert_schedule(
    db: psycopg.Connection[Any],
    workflow_id: str,
    user_id: str | None,
    *,
    interval_seconds: float = PERIOD,
    catch_up: str = "latest",
    name: str | None = None,
) -> str:
    """A schedules row (as the API or `definitions sync` writes it); its id."""
    row = db.execute(
        "insert into public.schedules (user_id, name, workflow_id, kind, interval_seconds,"
        " input_data, catch_up) values (%s, %s, %s, 'interval', %s, %s, %s) returning id",
        [user_id, name, workflow_id, interval_seconds, json.dumps({"n": 1}), catch_up],
    ).fetchone()
    assert row is not None
    return str(row[0])


def schedule_jobs(db: psycopg.Connection[Any], schedule_id: str) -> list[tuple[str, str]]:
    """(idempotency key, job id) of every job of the schedule, by key."""
    rows = db.execute(
        "select idempotency_key, id::text from public.jobs where idempotency_key like %s"
        " order by idempotency_key",
        [f"schedule:{schedule_id}:%"],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def created_at(db: psycopg.Connection[Any], schedule_id: str) -> datetime:
    """The schedule's created_at (an interval schedule's anchor)."""
    row = db.execute("select created_at from public.schedules where id = %s", [schedule_id])
    found = row.fetchone()
    assert found is not None
    return found[0]  # type: ignore[no-any-return]


def schedule_row(db: psycopg.Connection[Any], schedule_id: str) -> dict[str, Any]:
    """The schedule's firing columns."""
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    row = cur.execute(
        "select last_fired_for, last_job_id::text, last_status, consecutive_failures"
        " from public.schedules where id = %s",
        [schedule_id],
    ).fetchone()
    assert row is not None
    return dict(row)


def test_one_job_per_firing_time_and_the_catch_up_rule(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """Firing the same scheduled time twice gives one job (user and operator schedules
    alike); a firing past the grace is missed when a later one is due, and fires when it is
    the latest due unless catch_up is 'none'; a paused schedule fires nothing; each firing is
    counted by outcome."""
    add_workflow(db, "scheduled_wf", {"steps": []})
    firings = ScheduleFirings(flow_store)
    users = insert_schedule(db, "scheduled_wf", user_id)
    operators = insert_schedule(db, "scheduled_wf", None, name="nightly_test")
    at = datetime.now(UTC).replace(microsecond=0)
    for schedule_id in (users, operators):
        first = fire(schedule_id, at)
        second = fire(schedule_id, at)
        assert (first["outcome"], second["outcome"]) == ("created", "duplicate")
        assert first["job_id"] == second["job_id"]
        assert schedule_jobs(db, schedule_id) == [(firing_key(schedule_id, at), first["job_id"])]
        assert schedule_row(db, schedule_id)["last_job_id"] == first["job_id"]
    owner = db.execute("select user_id from public.jobs where id = %s", [first["job_id"]])
    assert owner.fetchone() == (None,)

    # The catch-up rule on the rows' rules (an interval fires at created_at + k * interval).
    every_2s = created_at(db, users)
    now = every_2s + timedelta(seconds=1000)
    assert fire(users, every_2s + timedelta(seconds=600), now=now)["outcome"] == "missed"
    hourly = insert_schedule(db, "scheduled_wf", user_id, interval_seconds=3600)
    hourly_none = insert_schedule(
        db, "scheduled_wf", user_id, interval_seconds=3600, catch_up="none"
    )
    for schedule_id, outcome in ((hourly, "created"), (hourly_none, "missed")):
        # 15 minutes late, the next firing still ahead: the latest due one.
        anchor = created_at(db, schedule_id)
        late = fire(schedule_id, anchor + timedelta(hours=1), now=anchor + timedelta(minutes=75))
        assert late["outcome"] == outcome
    assert len(schedule_jobs(db, hourly)) == 1
    assert schedule_jobs(db, hourly_none) == []
    db.execute("update public.schedules set active = false where id = %s", [users])
    assert fire(users, at + timedelta(seconds=2))["outcome"] == "inactive"
    assert firings.counts() == {
        "created": 3,
        "duplicate": 2,
        "missed": 2,
        "inactive": 1,
        "backfilled": 0,
    }


def test_the_schedule_row_records_how_its_jobs_ended(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """Each failed job of a schedule adds one to consecutive_failures, a completed one sets
    it back to 0; last_status is the last job's end. At ALERT_SCHEDULE_FAILURES (3) failures
    in a row the alerting pass opens a schedule_failing alert, and the next completed job
    resolves it."""
    add_workflow(db, "scheduled_wf", {"steps": []})
    schedule_id = insert_schedule(db, "scheduled_wf", user_id)
    firings = ScheduleFirings(flow_store)
    start = datetime.now(UTC).replace(microsecond=0)
    ends = [JobStatus.FAILED, JobStatus.FAILED, JobStatus.FAILED, JobStatus.COMPLETED]
    seen = []
    for i, end in enumerate(ends):
        job = fire(schedule_id, start + timedelta(seconds=2 * i))["job_id"]
        flow_store.transition(job, Transition(status=JobStatus.RUNNING))
        flow_store.transition(job, Transition(status=end, error_message="boom"))
        row = schedule_row(db, schedule_id)
        seen.append((row["last_status"], row["consecutive_failures"]))
        alerting = run_alerting(flow_store, get_settings())
        if i == 2:
            assert [r["id"] for r in firings.failing(3)] == [UUID(schedule_id)]
            assert [(k, s) for _, k, s in alerting.opened] == [("schedule_failing", schedule_id)]
        if i == 3:
            assert [(k, s) for _, k, s in alerting.resolved] == [("schedule_failing", schedule_id)]
    assert seen == [("failed", 1), ("failed", 2), ("failed", 3), ("completed", 0)]
    assert firings.failing(3) == []


def _fire_runs(client: SyncPrefectClient, deployment_id: UUID) -> list[FlowRun]:
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


def _schedule_runs(
    client: SyncPrefectClient, deployment_id: UUID, start: datetime, end: datetime
) -> None:
    """What Prefect's scheduler service does each loop (its `schedule_runs`), through the
    API's POST /deployments/{id}/schedule: the runs of the active schedules from start to end.
    The session's test server runs no scheduler service of its own."""
    answer = client._client.post(
        f"/deployments/{deployment_id}/schedule",
        json={"start_time": start.isoformat(), "end_time": end.isoformat(), "max_runs": 50},
    )
    answer.raise_for_status()


def _all_final(client: SyncPrefectClient, deployment_id: UUID, before: datetime) -> bool:
    runs = _fire_runs(client, deployment_id)
    due = [r for r in runs if r.expected_start_time and r.expected_start_time <= before]
    return bool(due) and all(r.state is not None and r.state.is_final() for r in due)


@pytest.mark.slow
def test_a_schedule_every_two_seconds_creates_n_jobs_and_pausing_stops_it(
    flow_store: JobStore, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Prefect interval schedule (2 s, an operator schedule's) on the fire-schedule
    deployment, its runs created by
    two scheduler passes over the same window and run by a warm worker: N firings make N
    jobs, keyed by the scheduled times, which then run to completed. A second flow run for
    an already fired time finds the same job. Paused (the Prefect schedule and the row),
    it creates no new job: a run created before the pause fires nothing, a scheduler pass
    creates no run, and a period later the count holds."""
    pool = unique_pool()
    monkeypatch.setenv("PREFECT_DEPLOYMENT", ensure_warm_deployment(pool, f"warm-{pool}"))
    get_settings.cache_clear()
    fire_name = ensure_schedule_deployment(pool, f"fire-{pool}")
    assert ensure_schedule_deployment(pool, f"fire-{pool}") == fire_name  # idempotent
    delay_transformer(db, "tiny_nap", 0.01)
    add_workflow(db, "scheduled_wf", {"steps": [{"id": "nap", "transformer": "tiny_nap"}]})
    # An operator schedule: its jobs belong to no user and run like any other.
    schedule_id = insert_schedule(db, "scheduled_wf", None, name="every_two_seconds")
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    times = [anchor + timedelta(seconds=PERIOD * i) for i in range(FIRINGS)]
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(fire_name).id
        [prefect_schedule] = client.create_deployment_schedules(
            deployment_id,
            [
                DeploymentScheduleCreate(
                    schedule=IntervalSchedule(
                        interval=timedelta(seconds=PERIOD), anchor_date=anchor
                    ),
                    active=True,
                    parameters={"schedule_id": schedule_id},
                    slug=schedule_id,
                )
            ],
        )
        for _ in range(2):  # two schedulers, the same window
            _schedule_runs(client, deployment_id, anchor, times[-1])
        assert sorted(r.expected_start_time for r in _fire_runs(client, deployment_id)) == times

        with warm_worker(pool, query_seconds=1):
            keys = [firing_key(schedule_id, t) for t in times]
            wait_until(
                lambda: (
                    [k for k, _ in schedule_jobs(db, schedule_id)] == keys
                    and _all_final(client, deployment_id, times[-1])
                ),
                120,
                f"{FIRINGS} jobs of {FIRINGS} firings",
            )
            jobs = [j for _, j in schedule_jobs(db, schedule_id)]
            for run in _fire_runs(client, deployment_id):
                late = (run.start_time - run.expected_start_time).total_seconds()  # type: ignore[operator]
                print(f"firing for {run.expected_start_time}: started {late:.2f} s late")
            wait_until(
                lambda: set(flow_store.statuses(jobs).values()) == {"completed"},
                120,
                "the scheduled jobs to complete",
            )
            row = schedule_row(db, schedule_id)
            assert (row["last_fired_for"], row["last_job_id"]) == (times[-1], jobs[-1])
            assert (row["last_status"], row["consecutive_failures"]) == ("completed", 0)

            # Another scheduler's run for a time already fired: the same job, nothing new.
            again = client.create_flow_run_from_deployment(
                deployment_id,
                parameters={"schedule_id": schedule_id},
                state=Scheduled(scheduled_time=times[1]),
            )
            wait_until(
                lambda: (s := client.read_flow_run(again.id).state) and s.is_final(),
                60,
                "the second run for one firing time",
            )
            assert [j for _, j in schedule_jobs(db, schedule_id)] == jobs

            # Pause: the Prefect schedule and the row. A run Prefect created ahead before the
            # pause fires nothing; a scheduler pass now creates no run.
            client.update_deployment_schedule(deployment_id, prefect_schedule.id, active=False)
            db.execute("update public.schedules set active = false where id = %s", [schedule_id])
            paused_at = datetime.now(UTC)
            ahead = client.create_flow_run_from_deployment(
                deployment_id,
                parameters={"schedule_id": schedule_id},
                state=Scheduled(scheduled_time=paused_at + timedelta(seconds=PERIOD)),
            )
            _schedule_runs(client, deployment_id, paused_at, paused_at + timedelta(seconds=10))
            wait_until(
                lambda: (
                    datetime.now(UTC) > paused_at + timedelta(seconds=2 * PERIOD)
                    and (s := client.read_flow_run(ahead.id).state) is not None
                    and s.is_final()
                ),
                60,
                "a period to pass after the pause, its last run finished",
            )
            runs = _fire_runs(client, deployment_id)
            assert len(runs) == FIRINGS + 2  # no run created after the pause
            assert [j for _, j in schedule_jobs(db, schedule_id)] == jobs


def test_a_firing_takes_the_workflows_callback_and_skips_a_disabled_workflow(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """As at POST /workflows/start without an on_finish of its own: the scheduled job gets
    the workflow's on_finish target; while the workflow is disabled a firing makes no job
    (counted inactive)."""
    definition = {"on_finish": {"url": "http://127.0.0.1:9/hook"}, "steps": []}
    add_workflow(db, "called_back_wf", definition)
    schedule_id = insert_schedule(db, "called_back_wf", user_id)
    at = datetime.now(UTC).replace(microsecond=0)
    job = fire(schedule_id, at)["job_id"]
    on_finish = flow_store.get_job(job)["on_finish"]
    assert on_finish["url"] == "http://127.0.0.1:9/hook"
    db.execute("update public.workflows set enabled = false where id = 'called_back_wf'")
    assert fire(schedule_id, at + timedelta(seconds=2))["outcome"] == "inactive"
    assert len(schedule_jobs(db, schedule_id)) == 1


def test_only_the_schedules_own_jobs_count_for_it(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """A job another user started with a key naming someone's schedule id leaves that
    schedule's last_status and consecutive_failures alone, and a key that only looks like a
    schedule's (36 dashes for the id) does not stop its job from ending."""
    add_workflow(db, "scheduled_wf", {"steps": []})
    schedule_id = insert_schedule(db, "scheduled_wf", user_id)
    other = create_user(db)
    keys = [f"schedule:{schedule_id}:2026-01-01T00:00:00Z", f"schedule:{'-' * 36}:x"]
    for key in keys:
        job = flow_store.create_job(
            user_id=other, workflow_id="scheduled_wf", input_data={}, idempotency_key=key
        ).id
        flow_store.transition(job, Transition(status=JobStatus.RUNNING))
        flow_store.transition(job, Transition(status=JobStatus.FAILED, error_message="boom"))
        assert flow_store.get_job(job)["status"] == "failed"
    row = schedule_row(db, schedule_id)
    assert (row["last_status"], row["consecutive_failures"]) == (None, 0)
