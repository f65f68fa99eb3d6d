"""The fire-schedule deployment: every schedules row is one Prefect schedule on it.

`ensure_schedule_deployment` creates it on the warm worker's pool when it does not exist (a
warm worker started by `python -m worker`/`supaflow up` does it before it serves). An
existing deployment is left alone: Prefect's create_deployment is an upsert that deletes the
deployment's schedules, which are the schedules rows realised in Prefect.
"""

from __future__ import annotations

from pathlib import Path

import anyio
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.utilities.callables import parameter_schema

from engine.settings import PROJECT_ROOT, get_settings
from flows.schedules import FIRE_SCHEDULE_FLOW
from worker.command_options import DEFAULT_POOL
from worker.deployments import ensure_work_pool
from worker.flow_loading import load_flow

FIRE_SCHEDULE_ENTRYPOINT = "flows/schedules.py:fire_schedule"


async def ensure_schedule_deployment_async(
    pool: str = DEFAULT_POOL,
    name: str | None = None,
    *,
    project_dir: Path = PROJECT_ROOT,
) -> str:
    """Create the fire-schedule deployment on `pool` unless it exists; its full name.

    `name` is the deployment's name (default: the part after '/' of SCHEDULE_DEPLOYMENT).
    """
    name = name or get_settings().schedule_deployment.split("/", 1)[-1]
    full_name = f"{FIRE_SCHEDULE_FLOW}/{name}"
    async with get_client() as client:
        try:
            await client.read_deployment_by_name(full_name)
            return full_name
        except ObjectNotFound:
            pass
        flow = load_flow(FIRE_SCHEDULE_ENTRYPOINT, project_dir)
        await ensure_work_pool(client, pool)
        flow_id = await client.create_flow_from_name(flow.name)
        await client.create_deployment(
            flow_id=flow_id,
            name=name,
            entrypoint=FIRE_SCHEDULE_ENTRYPOINT,
            path=str(project_dir),
            work_pool_name=pool,
            work_queue_name="default",
            parameter_openapi_schema=parameter_schema(flow).model_dump(),
            description="Fires the recurring schedules (public.schedules): one job per firing.",
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(project_dir)}}
            ],
        )
    return full_name


def ensure_schedule_deployment(pool: str = DEFAULT_POOL, name: str | None = None) -> str:
    """Synchronous `ensure_schedule_deployment_async` (the worker's start, the CLI, tests)."""
    return anyio.run(ensure_schedule_deployment_async, pool, name)
