"""What the cancel and rerun tests share: a warm deployment the API's run starter creates flow
runs of, on the session's real Prefect server (a warm worker, started by each test, runs
them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from warm_workers import unique_pool

from engine.db.store import JobStore
from engine.dispatch import RunStarter
from worker.deployments import ensure_warm_deployment


@dataclass(frozen=True)
class WarmDeployment:
    """A warm pool of the test alone, its run-workflow deployment, and a run starter for it
    (fail-fast, as the API's)."""

    pool: str
    deployment_id: UUID
    starter: RunStarter


@pytest.fixture
def warm_deployment(flow_store: JobStore, prefect_client_retries: None) -> Iterator[WarmDeployment]:
    """A deployment on a fresh warm pool (no worker yet) and the API's kind of starter."""
    pool = unique_pool()
    name = ensure_warm_deployment(pool, f"warm-{pool}")
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(name).id
    starter = RunStarter.own_client(name)
    try:
        yield WarmDeployment(pool, deployment_id, starter)
    finally:
        starter.close()


def last_entry(store: JobStore, job_id: str) -> dict[str, Any]:
    """The job's last state_history entry."""
    history = store.get_job(job_id)["state_history"]
    assert isinstance(history, list) and history
    return dict(history[-1])


def event_kinds(store: JobStore, job_id: str) -> list[str]:
    """The kinds of the job's events, in order."""
    return [e["kind"] for e in store.events(job_id)]
