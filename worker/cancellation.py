"""Cancelling a flow run that executes in the worker's process.

The worker observes Cancelling flow runs (websocket, polling as fallback). A run executing
here gets a stop request through the engine's own boundary check, so it stops before its
next step starts (a step already running finishes); then the flow's on_cancellation hooks
run and the run is marked Cancelled, in the order Prefect's runner uses for processes (stop,
hooks, Cancelled).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, State
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Cancelling

from engine.prefect_private import request_engine_stop
from worker.execution import InProcessRun

CANCELLED_MESSAGE = "Flow run was cancelled."


async def request_stop(run: InProcessRun, run_logger: Any) -> None:
    """Stop `run` at its next boundary (before its next step starts).

    The engine checks a per-flow-run stop request (Prefect's suspension request) before
    every task run and state change; the request carries a Cancelling state, raised as
    `Pause` there. Once the thread has ended, `finish_cancellation` runs the hooks and marks
    the run Cancelled.
    """
    if run.cancel_requested.is_set():
        return
    run.cancel_requested.set()
    run_logger.info("stopping flow run: cancellation requested")
    request: State[Any] = Cancelling(message=CANCELLED_MESSAGE)
    # The engine registers the request slot when it starts; until then the thread checks
    # cancel_requested itself before starting the engine.
    while not run.done.is_set():
        if request_engine_stop(run.flow_run.id, request):
            return
        await anyio.sleep(0.05)


async def finish_cancellation(client: PrefectClient, run: InProcessRun, run_logger: Any) -> None:
    """After a cancelled run's thread ended: its on_cancellation hooks, then Cancelled."""
    state: State[Any] = Cancelling(message=CANCELLED_MESSAGE)
    await anyio.to_thread.run_sync(run_cancellation_hooks, run.flow, run.flow_run, state)
    try:
        await client.set_flow_run_state(
            run.flow_run.id, Cancelled(message=CANCELLED_MESSAGE), force=True
        )
    except ObjectNotFound:
        return
    run_logger.info("flow run cancelled")


def run_cancellation_hooks(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Call the flow's on_cancellation hooks; one that raises is logged, the next still runs."""
    run_logger = logging.getLogger("supaflow.warm_worker.hooks")
    for hook in flow.on_cancellation_hooks or []:
        try:
            hook(flow=flow, flow_run=flow_run, state=state)
        except Exception:
            run_logger.exception("on_cancellation hook failed for flow run %s", flow_run.id)
