"""Flow-run heartbeats for the runs a warm worker executes, from one loop.

The flow engine's per-run heartbeat thread is off in a warm worker (its shutdown costs about
1 s per in-process run, see worker/execution.py); instead the worker emits the same
`prefect.flow-run.heartbeat` event for every run it holds, every `heartbeat_seconds`.
`jobs.heartbeat_at` is the flow's own business (run_workflow beats while it works).
"""

from __future__ import annotations

from collections.abc import Iterable

from prefect.client.schemas.objects import FlowRun
from prefect.events import emit_event

from worker.execution import InProcessRun

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"


def heartbeat_resources(
    flow_run: FlowRun, flow_name: str
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(resource, related resources) of the heartbeat event of `flow_run`."""
    related = [
        {
            "prefect.resource.id": f"prefect.flow.{flow_run.flow_id}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": flow_name,
        }
    ]
    if flow_run.deployment_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                "prefect.resource.role": "deployment",
            }
        )
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
        "prefect.resource.name": flow_run.name or "",
    }
    return resource, related


def emit_heartbeats(runs: Iterable[InProcessRun]) -> int:
    """Emit the heartbeat event of every run in `runs` still executing; returns how many."""
    alive = [run for run in runs if not run.done.is_set()]
    for run in alive:
        resource, related = heartbeat_resources(run.flow_run, run.flow.name)
        emit_event(event=HEARTBEAT_EVENT, resource=resource, related=related)
    return len(alive)
