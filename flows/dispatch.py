"""Creating flow runs for jobs from inside the engine (maintenance, recovery)."""

from __future__ import annotations

import logging
from uuid import UUID

from prefect.client.orchestration import get_client

logger = logging.getLogger("supaflow.dispatch")


def start_job_run(deployment_name: str, job_id: str) -> str | None:
    """Create the job's flow run (job id as idempotency key); None if Prefect refuses.

    The idempotency key makes this safe to repeat: if the API already created a run for the
    job but could not record it, Prefect returns that same run instead of a second one.
    """
    try:
        with get_client(sync_client=True) as client:
            deployment_id: UUID = client.read_deployment_by_name(deployment_name).id
            run = client.create_flow_run_from_deployment(
                deployment_id, parameters={"job_id": job_id}, idempotency_key=job_id
            )
    except Exception as exc:
        logger.warning("could not create a flow run for job %s: %s", job_id, exc)
        return None
    return str(run.id)
