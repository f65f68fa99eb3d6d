"""The job_callbacks outbox (migration 20261207000300) on a real database: the trigger owes
exactly one callback per job end, whatever path ends the job, and RLS shows a callback to the
job's owner only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from dbfixtures import as_user, create_user, insert_job, insert_workflow
from psycopg.rows import dict_row

from api.metrics import snapshot_metrics
from engine.db.job_writes import Transition
from engine.db.metrics import read_metrics
from engine.db.store import JobStore
from engine.jobs.transitions import JobStatus

TARGET = {
    "url": "https://hooks.example.com/cb",
    "secret_env": "CB_SECRET",
    "max_attempts": 3,
    "retry_delay_seconds": 2.5,
}


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    """A JobStore on the test's database."""
    job_store = JobStore(database_url, max_size=2)
    try:
        yield job_store
    finally:
        job_store.close()


@pytest.fixture
def workflow(db: psycopg.Connection[Any]) -> str:
    """A workflow for the test's jobs."""
    return insert_workflow(db, "wf_callbacks")


def rows(db: psycopg.Connection[Any], job_id: str) -> list[dict[str, Any]]:
    """The job's outbox rows, oldest first."""
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select * from public.job_callbacks where job_id = %s order by end_number", [job_id]
        ).fetchall()


def running_job(db: psycopg.Connection[Any], user: str, workflow: str, **columns: Any) -> str:
    """A running job with the callback target (unless given otherwise)."""
    values = {"status": "running", "on_finish": TARGET, **columns}
    return insert_job(db, user, workflow, **values)


def test_a_job_ending_owes_one_callback_with_a_snapshot(
    store: JobStore, db: psycopg.Connection[Any], workflow: str
) -> None:
    """Failing a job (as a cancel does: kind cancelled) inserts one pending row copying the
    target (no secret, only its variable) and the end (status, error, kind, time); a second
    write of the same end inserts nothing."""
    user = create_user(db)
    job_id = running_job(db, user, workflow)
    cancelled = Transition(status=JobStatus.FAILED, error_message="cancelled by its owner",
                           detail={"kind": "cancelled"})  # fmt: skip
    store.transition(job_id, cancelled)
    store.transition(job_id, cancelled)  # refused: a terminal job stays as it is

    (row,) = rows(db, job_id)
    job = store.get_job(job_id)
    assert (row["status"], row["attempts"], row["end_number"]) == ("pending", 0, 1)
    assert (row["url"], row["secret_env"], row["max_attempts"]) == (TARGET["url"], "CB_SECRET", 3)
    assert row["retry_delay_seconds"] == 2.5 and str(row["user_id"]) == user
    assert (row["job_status"], row["error_kind"]) == ("failed", "cancelled")
    assert row["error_message"] == "cancelled by its owner"
    assert row["finished_at"] == job["completed_at"]


def test_completion_and_every_other_end_path_are_covered(
    store: JobStore, db: psycopg.Connection[Any], workflow: str
) -> None:
    """Completion (no error copied), a direct update (as maintenance's give-up or any other
    writer) and a job without a target: one row, one row, none."""
    user = create_user(db)
    done = running_job(db, user, workflow)
    store.transition(done, Transition(status=JobStatus.COMPLETED, final_result={"ok": True}))
    given_up = running_job(db, user, workflow)
    db.execute(
        "update public.jobs set status = 'failed', error_message = 'gave up' where id = %s",
        [given_up],
    )
    untargeted = running_job(db, user, workflow, on_finish=None)
    store.transition(untargeted, Transition(status=JobStatus.COMPLETED, final_result={}))

    (completed,) = rows(db, done)
    assert completed["job_status"] == "completed" and completed["error_message"] is None
    (failed,) = rows(db, given_up)
    assert failed["job_status"] == "failed" and failed["error_message"] == "gave up"
    assert rows(db, untargeted) == []


def test_a_rerun_that_ends_again_owes_a_new_callback(
    store: JobStore, db: psycopg.Connection[Any], workflow: str
) -> None:
    """Keyed by the job's ends counted, not by retry_count: the failed end and the rerun's
    completion are two rows, even when the rerun's step retries wrote a lower retry_count."""
    user = create_user(db)
    job_id = running_job(db, user, workflow)
    store.transition(job_id, Transition(status=JobStatus.FAILED, error_message="boom"))
    db.execute(
        "update public.jobs set status = 'pending', retry_count = retry_count + 1 where id = %s",
        [job_id],
    )
    store.transition(job_id, Transition(status=JobStatus.RUNNING))
    db.execute("update public.jobs set retry_count = 0 where id = %s", [job_id])
    store.transition(job_id, Transition(status=JobStatus.COMPLETED, final_result={"n": 1}))

    assert [(r["end_number"], r["job_status"]) for r in rows(db, job_id)] == [
        (1, "failed"),
        (2, "completed"),
    ]


def test_rls_the_owner_reads_their_callbacks_and_nobody_else_does(
    store: JobStore, db: psycopg.Connection[Any], workflow: str
) -> None:
    """authenticated: the owner sees their job's callback, a stranger sees none, and neither
    may write; anon has no privilege at all."""
    owner, stranger = create_user(db), create_user(db)
    job_id = running_job(db, owner, workflow)
    store.transition(job_id, Transition(status=JobStatus.COMPLETED, final_result={}))
    read = "select job_id::text, status from public.job_callbacks"

    with as_user(db, owner) as conn:
        assert conn.execute(read).fetchall() == [(job_id, "pending")]
    with as_user(db, stranger) as conn:
        assert conn.execute(read).fetchall() == []
    for statement in (
        "update public.job_callbacks set status = 'delivered'",
        "delete from public.job_callbacks",
        f"insert into public.job_callbacks (job_id, url, job_status) "
        f"values ('{job_id}', 'https://x.example.com', 'completed')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(db, owner) as conn:
            conn.execute(statement)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(db, None, "anon") as conn:
        conn.execute(read)
    assert rows(db, job_id)[0]["status"] == "pending"


def test_metrics_count_callbacks_by_status(
    store: JobStore, db: psycopg.Connection[Any], workflow: str
) -> None:
    """supaflow_callbacks_total{status} and supaflow_callback_attempts_total{status} read the
    outbox at scrape time; a status with no callback is 0."""
    user = create_user(db)
    ids = [running_job(db, user, workflow) for _ in range(3)]
    db.execute("update public.jobs set status = 'completed' where id = any(%s)", [ids])
    db.execute(
        "update public.job_callbacks set status = 'failed', attempts = 3 where job_id = %s",
        [ids[0]],
    )
    db.execute(
        "update public.job_callbacks set status = 'delivered', attempts = 2 where job_id = %s",
        [ids[1]],
    )

    samples = {
        (s.name, s.labels.get("status")): s.value
        for family in snapshot_metrics(read_metrics(store.pool))
        if family.name in ("supaflow_callbacks", "supaflow_callback_attempts")
        for s in family.samples
    }
    assert samples == {
        ("supaflow_callbacks_total", "delivered"): 1,
        ("supaflow_callbacks_total", "failed"): 1,
        ("supaflow_callbacks_total", "pending"): 1,
        ("supaflow_callback_attempts_total", "delivered"): 2,
        ("supaflow_callback_attempts_total", "failed"): 3,
        ("supaflow_callback_attempts_total", "pending"): 0,
    }
