"""The warm work pool and the deployment that runs jobs on it.

`ensure_warm_deployment` creates (or updates) the `run-workflow-warm` deployment: the same
flow, entrypoint and parameters as prefect.yaml's `run-workflow`, on the `supaflow-warm`
pool, so both can exist at once and settings choose which one the API starts. The bench and
the tests deploy with it; `python -m worker --deploy` too.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.utilities.callables import parameter_schema

from engine.settings import PROJECT_ROOT
from worker.command_options import DEFAULT_POOL, WARM_DEPLOYMENT
from worker.flow_loading import RUN_WORKFLOW_ENTRYPOINT, load_flow
from worker.worker import WORKER_TYPE, WarmWorker


async def ensure_work_pool(client: PrefectClient, pool: str = DEFAULT_POOL) -> None:
    """Create the `supaflow-warm` work pool if it does not exist (works offline)."""
    try:
        await client.read_work_pool(pool)
        return
    except ObjectNotFound:
        pass
    with contextlib.suppress(ObjectAlreadyExists):  # created by someone else meanwhile
        await client.create_work_pool(
            WorkPoolCreate(
                name=pool,
                type=WORKER_TYPE,
                base_job_template=WarmWorker.get_default_base_job_template(),
            )
        )


async def ensure_warm_deployment_async(
    pool: str = DEFAULT_POOL,
    name: str = WARM_DEPLOYMENT,
    *,
    entrypoint: str = RUN_WORKFLOW_ENTRYPOINT,
    project_dir: Path = PROJECT_ROOT,
) -> str:
    """Create or update the deployment that runs jobs on the warm pool; returns its full name.

    It mirrors prefect.yaml's `run-workflow` (same flow, entrypoint and parameters) on the
    warm pool, so both can exist at once and settings choose which one the API starts.
    """
    flow = load_flow(entrypoint, project_dir)
    async with get_client() as client:
        await ensure_work_pool(client, pool)
        flow_id = await client.create_flow_from_name(flow.name)
        await client.create_deployment(
            flow_id=flow_id,
            name=name,
            entrypoint=entrypoint,
            path=str(project_dir),
            work_pool_name=pool,
            work_queue_name="default",
            parameter_openapi_schema=parameter_schema(flow).model_dump(),
            description="Runs one job in a warm worker (in-process, no process per run).",
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(project_dir)}}
            ],
        )
    return f"{flow.name}/{name}"


def ensure_warm_deployment(pool: str = DEFAULT_POOL, name: str = WARM_DEPLOYMENT) -> str:
    """Synchronous `ensure_warm_deployment_async` (for the CLI and tests)."""
    return anyio.run(ensure_warm_deployment_async, pool, name)
