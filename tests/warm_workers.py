"""Helpers for tests that run jobs on a warm worker the production way: a deployment on a
warm pool, a flow run per job, the worker claiming it (in a thread of the test process, so
test-only executors can be registered)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.settings import (
    PREFECT_CLIENT_MAX_RETRIES,
    PREFECT_WORKER_QUERY_SECONDS,
    temporary_settings,
)
from waiting import wait_until

from engine.db.store import JobStore
from worker.deployments import ensure_warm_deployment
from worker.serve import run_worker
from worker.worker import WarmWorker

TERMINAL = ("completed", "failed")


@contextmanager
def warm_worker(pool: str, *, query_seconds: float = 60.0, **options: Any) -> Iterator[WarmWorker]:
    """A warm worker on `pool` in a thread of this process, stopped when the block ends.

    The fallback poll is slow (60 s) so that prompt starts can only come from NOTIFY wake-ups
    (or, for a full worker, from a slot freeing up). Prefect's client may retry here (the
    session turns retries off): the SQLite test server answers 503 when busy.
    """
    worker = WarmWorker(pool, drain_seconds=10.0, **options)
    stop = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            with temporary_settings(
                {PREFECT_CLIENT_MAX_RETRIES: 5, PREFECT_WORKER_QUERY_SECONDS: query_seconds}
            ):
                asyncio.run(run_worker(worker, stop=stop, handle_signals=False))
        except BaseException as exc:  # reported by the test below
            failure.append(exc)

    thread = threading.Thread(target=contextvars.copy_context().run, args=(serve,), daemon=True)
    thread.start()
    try:
        assert worker.ready.wait(60), failure
        yield worker
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the worker did not stop"
    assert not failure, failure


def deploy(pool: str) -> UUID:
    """The warm pool and a run-workflow deployment on it; returns the deployment id."""
    name = ensure_warm_deployment(pool, f"warm-{pool}")
    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name).id


def dispatch(store: JobStore, deployment_id: UUID, job_id: str, *, key: str = "") -> str:
    """What the API does for POST /workflows/start: flow run, then its id on the job."""
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"job_id": job_id}, idempotency_key=key or job_id
        )
    store.set_flow_run(job_id, str(run.id))
    return str(run.id)


def wait_for_jobs(store: JobStore, job_ids: list[str], timeout: float = 60) -> dict[str, str]:
    """Wait until every job is completed or failed; returns their statuses."""
    return dict(
        wait_until(
            lambda: (s := store.statuses(job_ids)) and all(v in TERMINAL for v in s.values()) and s,
            timeout,
            f"jobs {job_ids} to finish",
        )
    )


def read_flow_run(run_id: str) -> FlowRun:
    """The flow run as the Prefect API reports it now."""
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id))


def wait_for_state(run_id: str, state_type: str, timeout: float = 30) -> FlowRun:
    """Wait until the flow run's state has type `state_type` (e.g. 'CRASHED')."""

    def check() -> FlowRun | None:
        run = read_flow_run(run_id)
        return run if run.state and run.state.type.value == state_type else None

    return wait_until(check, timeout, f"flow run {run_id} to be {state_type}")  # type: ignore[no-any-return]


def wait_for_owner(run_id: str, owner: str, timeout: float = 30) -> None:
    """Wait until the flow run names `owner` as its infrastructure (written while it runs)."""
    wait_until(
        lambda: read_flow_run(run_id).infrastructure_pid == owner,
        timeout,
        f"flow run {run_id} to name its worker process",
    )


def wait_for_task_runs(run_id: str, timeout: float = 30) -> list[str]:
    """The names of the flow run's task runs, once there are any (the server records task
    runs from their events, so they may appear after the flow run's final state)."""

    def check() -> list[str]:
        with get_client(sync_client=True) as client:
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)]))
            )
        return [t.name for t in task_runs]

    return wait_until(check, timeout, f"the task runs of flow run {run_id}")  # type: ignore[no-any-return]


def job_events(store: JobStore, job_id: str, kind: str) -> list[dict[str, Any]]:
    """The job's events of `kind`."""
    return [e for e in store.events(job_id) if e["kind"] == kind]


def max_overlap(hits: list[Any]) -> int:
    """Most requests that were open at the same moment."""
    moments = sorted([(h.entered, 1) for h in hits] + [(h.left, -1) for h in hits])
    open_now = peak = 0
    for _, change in moments:
        open_now += change
        peak = max(peak, open_now)
    return peak


def unique_pool() -> str:
    """A work pool name of this test alone (the Prefect server lives for the session)."""
    return f"warm-{uuid.uuid4().hex[:8]}"
