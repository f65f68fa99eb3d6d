"""A delayed job (jobs.scheduled_for) in the store's queries, on real PostgreSQL: its deadline
counts from its time, maintenance counts its silence from it, the slow-queue alert does not
count it before it, the run bundle says how far off it is, and the dispatcher hands its time
to the run starter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from dbfixtures import insert_job, insert_workflow

from engine.db.alert_store import AlertStore
from engine.db.store import JobStore
from engine.jobs.alerts import AlertThresholds


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    """A store of its own on the test's database."""
    job_store = JobStore(database_url, min_size=1, max_size=2)
    try:
        yield job_store
    finally:
        job_store.close()


def db_now(db: psycopg.Connection[Any]) -> datetime:
    """The database clock."""
    row = db.execute("select now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def test_a_delayed_jobs_deadline_counts_from_its_scheduled_for(
    db: psycopg.Connection[Any], user_id: str
) -> None:
    """timeout_seconds 60: a job scheduled an hour ahead must finish by scheduled_for + 60 s;
    a job without scheduled_for, by created_at + 60 s."""
    workflow = insert_workflow(db, definition={"steps": [], "timeout_seconds": 60})
    at = db_now(db) + timedelta(hours=1)
    delayed = insert_job(db, user_id, workflow, scheduled_for=at)
    plain = insert_job(db, user_id, workflow)
    rows = dict(
        db.execute(
            "select id::text, deadline_at - coalesce(scheduled_for, created_at) from public.jobs"
        ).fetchall()
    )
    assert rows == {delayed: timedelta(seconds=60), plain: timedelta(seconds=60)}


def test_maintenance_counts_a_delayed_jobs_silence_from_its_time(
    store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """Three pending jobs created and dispatched an hour ago, their runs taken: one scheduled
    an hour ahead is not silent at all (negative age), one whose time was ten minutes ago
    has been silent since then, one without scheduled_for since its creation."""
    workflow = insert_workflow(db)
    now, hour = db_now(db), timedelta(hours=1)
    old = {"created_at": now - hour, "last_updated_at": now - hour, "dispatched_at": now - hour}
    ahead, passed, plain = (
        insert_job(
            db,
            user_id,
            workflow,
            prefect_flow_run_id=str(uuid4()),
            scheduled_for=at,
            **old,
        )
        for at in (now + hour, now - timedelta(minutes=10), None)
    )
    with store.locked_in_flight(grace_seconds=60) as (_conn, jobs):
        ages = {j.id: j.heartbeat_age_seconds for j in jobs}
        times = {j.id: j.scheduled_for for j in jobs}
    assert ages[ahead] < 0
    assert 600 <= ages[passed] < 3600
    assert ages[plain] >= 3600
    assert times == {ahead: now + hour, passed: now - timedelta(minutes=10), plain: None}


def test_the_queue_alert_waits_for_a_delayed_jobs_time(
    store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """A pending job scheduled ahead (created long ago) is not in the queue; one whose time
    passed counts, waiting since its scheduled_for, not since its creation."""
    workflow = insert_workflow(db)
    now, day = db_now(db), timedelta(days=1)
    insert_job(db, user_id, workflow, created_at=now - day, scheduled_for=now + day)
    observed = AlertStore(store.pool).observe(AlertThresholds())
    assert (observed.pending_jobs, observed.oldest_pending_created_at) == (0, None)
    due = now - timedelta(minutes=1)
    insert_job(db, user_id, workflow, created_at=now - day, scheduled_for=due)
    observed = AlertStore(store.pool).observe(AlertThresholds())
    assert (observed.pending_jobs, observed.oldest_pending_created_at) == (1, due)


def test_the_run_bundle_says_how_far_off_a_delayed_job_is(
    store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """starts_in_seconds: positive before its time, negative after, None without one."""
    workflow = insert_workflow(db)
    now = db_now(db)
    ahead = insert_job(db, user_id, workflow, scheduled_for=now + timedelta(hours=1))
    passed = insert_job(db, user_id, workflow, scheduled_for=now - timedelta(hours=1))
    plain = insert_job(db, user_id, workflow)
    starts_in = store.load_run_bundle(ahead).starts_in_seconds
    assert starts_in is not None and 0 < starts_in <= 3600
    starts_in = store.load_run_bundle(passed).starts_in_seconds
    assert starts_in is not None and starts_in < 0
    assert store.load_run_bundle(plain).starts_in_seconds is None


def test_the_dispatcher_passes_a_delayed_jobs_time_to_the_run_starter(
    store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """dispatch_pending calls start(job_id) for a job without scheduled_for and
    start(job_id, scheduled_for=...) for a delayed one, and records both runs."""
    workflow = insert_workflow(db)
    at = db_now(db) + timedelta(hours=1)
    delayed = store.create_job(user_id=user_id, workflow_id=workflow, input_data={}, start_at=at).id
    plain = store.create_job(user_id=user_id, workflow_id=workflow, input_data={}).id
    calls: dict[str, datetime | None] = {}

    def start(job_id: str, *, scheduled_for: datetime | None = None) -> str:
        calls[job_id] = scheduled_for
        return str(uuid4())

    outcomes = store.dispatch_pending(start, grace_seconds=0)
    assert calls == {delayed: at, plain: None}
    assert {job for job, run in outcomes if run} == {delayed, plain}
    assert store.get_job(delayed)["prefect_flow_run_id"] is not None
