"""Crashed flow runs: marking them, and finding the runs of warm workers that are gone.

A warm worker killed with -9 (or by the OOM killer) leaves its runs Running or Pending in
Prefect. Every warm worker, when it starts and every `reap_seconds` after, marks Crashed the
active runs of its pool whose owner process on this host no longer exists
(worker/ownership.py), and records `flow_run_crashed` on their jobs. Jobs stay non-terminal:
resubmission is the maintenance flow's decision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import anyio
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import OrchestrationResult
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed

from worker.ownership import owner_is_gone, process_alive

logger = logging.getLogger("supaflow.warm_worker")


def _record_crash(job_id: str, flow_run_id: str, message: str) -> None:
    from engine.db.connection import shared_store

    shared_store().add_event(
        job_id, "flow_run_crashed", detail={"flow_run_id": flow_run_id, "error": message}
    )


async def mark_crashed(
    client: PrefectClient, flow_run: FlowRun, message: str, *, logger: Any = logger
) -> bool:
    """Propose Crashed for `flow_run` unless it is already final; record it on its job.

    True when this call changed the state. The job keeps its status (the maintenance flow
    decides about resubmission); its event log gets `flow_run_crashed`.
    """
    try:
        current = await client.read_flow_run(flow_run.id)
    except ObjectNotFound:
        return False
    changed = False
    if current.state is None or not current.state.is_final():
        try:
            result: OrchestrationResult[Any] = await client.set_flow_run_state(
                flow_run.id, Crashed(message=message), force=True
            )
            changed = result.state is not None and result.state.is_crashed()
        except ObjectNotFound:
            return False
    if current.state is not None and current.state.is_crashed() and not changed:
        # The engine reported its own crash; still tell the job.
        changed = True
    job_id = (flow_run.parameters or {}).get("job_id")
    if changed and job_id:
        try:
            await anyio.to_thread.run_sync(_record_crash, str(job_id), str(flow_run.id), message)
        except Exception:
            logger.exception("could not record the crash of flow run %s on its job", flow_run.id)
    if changed:
        logger.warning("flow run %s crashed: %s", flow_run.id, message)
    return changed


async def reap_orphaned_runs(
    client: PrefectClient,
    *,
    pool: str,
    host: str,
    is_ours: Callable[[FlowRun], bool],
    logger: Any = logger,
) -> list[UUID]:
    """Mark Crashed the pool's active runs whose warm worker process on `host` is gone.

    Runs for which `is_ours` is true (executing in the calling worker) are left alone.
    """
    flow_runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
            )
        ),
        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        limit=200,
    )
    reaped: list[UUID] = []
    for flow_run in flow_runs:
        if is_ours(flow_run):
            continue
        if not owner_is_gone(flow_run.infrastructure_pid, host=host, alive=process_alive):
            continue
        await mark_crashed(
            client,
            flow_run,
            f"the warm worker that executed it ({flow_run.infrastructure_pid}) is gone",
            logger=logger,
        )
        reaped.append(flow_run.id)
    return reaped
