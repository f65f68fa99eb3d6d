"""The maintenance flow, on a Prefect schedule: the engine's periodic tick.

It dispatches `pending` jobs that never reached Prefect (the API could not create their
flow run: Prefect down, API restarted mid-request).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from engine.database import shared_store
from engine.settings import get_settings
from flows.dispatch import start_job_run


@flow(name="maintenance", persist_result=False)
def maintenance(grace_seconds: float = 10.0, limit: int = 100) -> dict[str, Any]:
    """One maintenance pass; returns what it did (also logged as decisions)."""
    settings = get_settings()
    store = shared_store(settings)
    logger = get_run_logger()
    outcomes = store.dispatch_pending(
        lambda job_id: start_job_run(settings.prefect_deployment, job_id),
        grace_seconds=grace_seconds,
        limit=limit,
    )
    dispatched = [job for job, run in outcomes if run is not None]
    waiting = [job for job, run in outcomes if run is None]
    for job_id, run_id in outcomes:
        logger.info(
            "dispatch decision: %s",
            "flow run created" if run_id else "Prefect unreachable, job stays pending",
            extra={"job_id": job_id, "flow_run_id": run_id, "decision": "dispatch"},
        )
    return {"dispatched": dispatched, "still_pending": waiting}
