"""The store hands the engine typed rows built from its SQL rows: the run bundle, the jobs in
flight for recovery and the pending jobs to dispatch; a NULL max_retries means the column's
default in every one of them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from dbfixtures import insert_job, insert_transformer, insert_workflow

from engine.db.rows import InFlightJob, JobRow
from engine.db.store import JobStore
from engine.definitions.retry import DEFAULT_JOB_MAX_RETRIES
from engine.jobs.transitions import JobStatus


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    """A store of its own on the test's database."""
    job_store = JobStore(database_url, min_size=1, max_size=2)
    try:
        yield job_store
    finally:
        job_store.close()


def test_run_bundle_is_typed_job_definition_and_used_transformers(
    store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """The bundle's job has typed fields (ids as text, status as JobStatus, NULL step_data as
    {}, NULL max_retries as the default); only the transformers the steps name come along."""
    used = insert_transformer(db, config={"timeout_seconds": 5})
    insert_transformer(db)  # stored, but no step names it
    definition = {"steps": [{"id": "a", "transformer": used, "input": {}}]}
    workflow = insert_workflow(db, definition=definition)
    job_id = insert_job(
        db, user_id, workflow, input_data={"x": 1}, step_data=None, max_retries=None
    )

    bundle = store.load_run_bundle(job_id)

    job = bundle.job
    assert isinstance(job, JobRow)
    assert (job.id, job.workflow_id, job.user_id) == (job_id, workflow, user_id)
    assert job.status is JobStatus.PENDING
    assert (job.input_data, job.step_data) == ({"x": 1}, {})
    assert (job.retry_count, job.resubmissions) == (0, 0)
    assert job.max_retries == DEFAULT_JOB_MAX_RETRIES
    assert isinstance(job.created_at, datetime)
    assert bundle.definition == definition
    assert list(bundle.transformers) == [used]
    assert bundle.transformers[used]["config"] == {"timeout_seconds": 5}


def test_in_flight_jobs_are_typed_and_stay_locked_while_handled(
    store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """A running job comes back as an InFlightJob (flow run id as text, silence in seconds),
    and while the pass holds it no other SKIP LOCKED reader sees it."""
    workflow = insert_workflow(db)
    run_id = str(uuid4())
    job_id = insert_job(
        db,
        user_id,
        workflow,
        status="running",
        prefect_flow_run_id=run_id,
        resubmissions=1,
        max_retries=None,
    )

    with store.locked_in_flight(grace_seconds=0) as (_conn, jobs):
        assert jobs == [
            InFlightJob(
                id=job_id,
                status=JobStatus.RUNNING,
                flow_run_id=run_id,
                resubmissions=1,
                max_retries=DEFAULT_JOB_MAX_RETRIES,
                heartbeat_age_seconds=jobs[0].heartbeat_age_seconds,
            )
        ]
        assert jobs[0].heartbeat_age_seconds >= 0.0
        with store.locked_in_flight(grace_seconds=0) as (_other, seen_meanwhile):
            assert seen_meanwhile == []


def test_dispatch_hands_pending_job_ids_to_the_starter_and_records_its_runs(
    store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """Pending jobs without a flow run go to `start` by id, oldest first; the run it returns
    is recorded, a None (orchestrator unreachable) leaves the job pending for next time."""
    workflow = insert_workflow(db)
    first = insert_job(db, user_id, workflow, created_at=datetime(2020, 1, 1))
    second = insert_job(db, user_id, workflow, created_at=datetime(2020, 1, 2))
    run_id = str(uuid4())
    runs = {first: run_id, second: None}

    outcomes = store.dispatch_pending(runs.__getitem__, grace_seconds=0)

    assert outcomes == [(first, run_id), (second, None)]
    assert str(store.get_job(first)["prefect_flow_run_id"]) == run_id
    assert store.get_job(second)["prefect_flow_run_id"] is None


def test_created_job_without_max_retries_gets_the_column_default(
    store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """The API's create_job without max_retries stores the same default the rows apply."""
    created = store.create_job(user_id=user_id, workflow_id=insert_workflow(db), input_data={})
    assert store.get_job(created.id)["max_retries"] == DEFAULT_JOB_MAX_RETRIES
    assert store.load_run_bundle(created.id).job.max_retries == DEFAULT_JOB_MAX_RETRIES
