"""Admission: pending jobs reach the run starter oldest first and fair across users, woken by
the insert's NOTIFY, each exactly once even with two dispatchers, and again after a failure.

The run starter here is a recording callable standing in for `RunStarter.try_start` (which
tests/api/test_app_prefect.py drives against a real Prefect server): what is tested is the
claim, the wake-up and the recording in the real database.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from dbfixtures import create_user, insert_job, insert_workflow
from waiting import wait_until

from engine.admission import Pace, PendingDispatcher
from engine.db.connection import shared_store
from engine.db.store import JobStore


class Recorder:
    """A run starter that records each job it is given and answers a new run id (or None
    while `failing`)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failing = False
        self._lock = threading.Lock()

    def __call__(self, job_id: str) -> str | None:
        with self._lock:
            self.calls.append(job_id)
        return None if self.failing else str(uuid.uuid4())


@pytest.fixture
def store(engine_env: str) -> JobStore:
    """The engine's store on the test database."""
    return shared_store()


@pytest.fixture
def workflow(db: psycopg.Connection[Any]) -> str:
    """A workflow the jobs belong to."""
    return insert_workflow(db)


@pytest.fixture
def running() -> Iterator[Callable[[PendingDispatcher], PendingDispatcher]]:
    """Start dispatchers for the test; every one is stopped at its end."""
    started: list[PendingDispatcher] = []

    def start(dispatcher: PendingDispatcher) -> PendingDispatcher:
        dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        dispatcher.stop()


def flow_runs(db: psycopg.Connection[Any], job_ids: list[str]) -> dict[str, str | None]:
    """Each job's recorded flow run id."""
    rows = db.execute(
        "select id::text, prefect_flow_run_id::text from public.jobs where id = any(%s::uuid[])",
        [job_ids],
    ).fetchall()
    return dict(rows)


def test_claim_takes_the_oldest_first_and_one_turn_per_user(
    store: JobStore, db: psycopg.Connection[Any], workflow: str
) -> None:
    """A user's burst of five older jobs does not hold back another user's one job by more
    than one turn: the claim goes A1, B1, A2, A3, ... and every job is recorded once."""
    alice, bob = create_user(db), create_user(db)
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    burst = [
        insert_job(db, alice, workflow, created_at=t0 + timedelta(seconds=i)) for i in range(5)
    ]
    late = insert_job(db, bob, workflow, created_at=t0 + timedelta(seconds=10))
    recorder = Recorder()
    first = store.dispatch_pending(recorder, grace_seconds=0, limit=3)
    assert [job for job, _ in first] == [burst[0], late, burst[1]]
    rest = store.dispatch_pending(recorder, grace_seconds=0, limit=10, parallel=4)
    assert sorted(job for job, _ in rest) == sorted(burst[2:])
    assert Counter(recorder.calls) == Counter([*burst, late])
    assert all(flow_runs(db, [*burst, late]).values())


def test_a_new_job_wakes_the_dispatcher(
    store: JobStore,
    db: psycopg.Connection[Any],
    workflow: str,
    running: Callable[[PendingDispatcher], PendingDispatcher],
) -> None:
    """With polling an hour apart, only the insert's NOTIFY can hand the job over in time."""
    recorder = Recorder()
    dispatcher = running(PendingDispatcher(store, recorder, pace=Pace(poll_seconds=3600)))
    wait_until(dispatcher.listening.is_set, 10, "the LISTEN connection")
    job = insert_job(db, create_user(db), workflow)
    wait_until(lambda: flow_runs(db, [job])[job], 20, "the job's flow run")
    assert recorder.calls == [job]


def test_two_dispatchers_start_each_job_once(
    store: JobStore,
    db: psycopg.Connection[Any],
    workflow: str,
    running: Callable[[PendingDispatcher], PendingDispatcher],
) -> None:
    """Two dispatchers draining the same outbox (SKIP LOCKED) start every job exactly once."""
    users = [create_user(db) for _ in range(3)]
    jobs = [insert_job(db, users[i % 3], workflow) for i in range(60)]
    recorder = Recorder()
    for _ in range(2):
        running(
            PendingDispatcher(store, recorder, pace=Pace(batch=7, parallel=3, poll_seconds=0.2))
        )
    wait_until(lambda: all(flow_runs(db, jobs).values()), 30, "every job's flow run")
    assert Counter(recorder.calls) == Counter(jobs)


def test_jobs_left_pending_while_prefect_fails_are_dispatched_once_it_answers(
    store: JobStore,
    db: psycopg.Connection[Any],
    workflow: str,
    running: Callable[[PendingDispatcher], PendingDispatcher],
) -> None:
    """While the starter fails the job stays pending without a run (counted as deferred);
    once it answers again the dispatcher's retry hands the job over."""
    recorder = Recorder()
    recorder.failing = True
    dispatcher = running(
        PendingDispatcher(store, recorder, pace=Pace(poll_seconds=0.2, max_backoff_seconds=0.5))
    )
    job = insert_job(db, create_user(db), workflow)
    wait_until(lambda: dispatcher.deferred >= 1, 20, "a failed dispatch")
    assert flow_runs(db, [job])[job] is None
    status = db.execute("select status from public.jobs where id = %s", [job]).fetchone()
    assert status == ("pending",)
    recorder.failing = False
    wait_until(lambda: flow_runs(db, [job])[job], 20, "the job's flow run after the failure")
    assert dispatcher.dispatched == 1
