"""Claiming a polled flow run and starting it in-process: BaseWorker's submission, leaner.

BaseWorker reads the deployment twice and the flow, then writes labels and a Submitting
state before it starts a run: 0.15-0.25 s per run. Here deployment and flow come from the
worker's cache (worker/flow_loading.py), labels and the infrastructure pid are written while
the run already executes, and Submitting is skipped (Pending -> Running is a valid path).
The claim itself is unchanged: the Pending proposal succeeds only once, so two workers never
run the same flow run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.abc
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.workers.base import BaseWorkerResult

if TYPE_CHECKING:
    from worker.worker import WarmWorker


@dataclass
class TrackedStatus:
    """A task status that remembers whether `started` was called."""

    inner: anyio.abc.TaskStatus[Any] | None
    done: bool = False

    def started(self, value: Any = None) -> None:
        """Report the run started (once)."""
        if self.done:
            return
        self.done = True
        if self.inner is not None:
            self.inner.started(value)


async def submit_run(worker: WarmWorker, flow_run: FlowRun) -> None:
    """Claim `flow_run` (the Pending proposal) and start it in `worker`.

    The limit slot BaseWorker took for the run is given back whenever the run does not start.
    """
    task_group = worker.runs_task_group
    assert task_group is not None
    try:
        try:
            await worker.flow_cache.resolve(worker.client, flow_run)
        except ObjectNotFound:
            worker.release_limit_slot(flow_run.id)
            await worker.mark_flow_run_as_cancelled(
                flow_run,
                state_updates={
                    "message": f"Deployment {flow_run.deployment_id} no longer exists, "
                    "cancelled run."
                },
            )
            return
        if not await worker.propose_pending_state(flow_run):
            worker.release_limit_slot(flow_run.id)
            return
        started = await task_group.start(execute_claimed_run, worker, flow_run)
        if started and not isinstance(started, Exception):
            task_group.start_soon(record_owner, worker, flow_run, str(started))
        else:
            worker.release_limit_slot(flow_run.id)
    finally:
        worker.submitting_flow_run_ids.discard(flow_run.id)
        if worker.cancelling_observer is not None:
            worker.cancelling_observer.remove_in_flight_flow_run_id(flow_run.id)


async def record_owner(worker: WarmWorker, flow_run: FlowRun, identifier: str) -> None:
    """Stamp the run with the worker process's id and the worker's labels (UI, crash checks)."""
    try:
        await worker.client.update_flow_run(flow_run_id=flow_run.id, infrastructure_pid=identifier)
        await worker.give_worker_labels_to_flow_run(flow_run.id)
    except Exception:
        worker.get_flow_run_logger(flow_run).warning(
            "could not record the worker on the flow run", exc_info=True
        )


async def execute_claimed_run(
    worker: WarmWorker,
    flow_run: FlowRun,
    task_status: anyio.abc.TaskStatus[Any] | None = None,
) -> BaseWorkerResult | Exception:
    """Run a claimed `flow_run` in `worker`, with the worker's submitted/executed events.

    `task_status` gets the worker's infrastructure id once the run executes, or the exception
    that kept it from starting (the run is then proposed Crashed).
    """
    run_logger = worker.get_flow_run_logger(flow_run)
    configuration = worker.job_configuration()
    submitted_event = None
    status = TrackedStatus(task_status)
    try:
        deployment = (
            await worker.flow_cache.deployment(worker.client, flow_run.deployment_id)
            if flow_run.deployment_id
            else None
        )
        configuration.prepare_for_flow_run(
            flow_run=flow_run,
            deployment=deployment,
            flow=await worker.flow_cache.api_flow(worker.client, flow_run.flow_id),
            work_pool=worker.work_pool,
            worker_name=worker.name,
            worker_id=worker.backend_id,
        )
        submitted_event = worker.emit_flow_run_submitted_event(configuration)
        result = await worker.run(
            flow_run=flow_run, configuration=configuration, task_status=status
        )
    except Exception as exc:
        if not status.done:
            run_logger.exception("could not start flow run %s in-process", flow_run.id)
            status.started(exc)
            await worker.propose_crashed_state(
                flow_run, f"could not start the run in-process: {type(exc).__name__}: {exc}"
            )
        else:
            run_logger.exception("flow run %s ended with a worker error", flow_run.id)
        return exc
    finally:
        worker.release_limit_slot(flow_run.id)
    if submitted_event is not None:
        worker.emit_flow_run_executed_event(result, configuration, submitted_event)
    return result
