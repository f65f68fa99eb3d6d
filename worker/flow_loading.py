"""Which flow object executes a flow run: deployment entrypoints imported once per process.

A warm worker imports its flows before the first run arrives (`FlowCache.preload`) and keeps
them: every run of the same entrypoint uses the same flow object, with its modules already
imported. Deployments and API flows are cached too (deployments for a minute, so that a
redeployed entrypoint is picked up).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import Flow as APIFlow
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.flows import load_flow_from_entrypoint

from engine.settings import PROJECT_ROOT

RUN_WORKFLOW_ENTRYPOINT = "flows/run_workflow.py:run_workflow"
#: How long a worker trusts its copy of a deployment (entrypoint) before reading it again.
DEPLOYMENT_CACHE_SECONDS = 60.0


def entrypoint_module(entrypoint: str) -> tuple[str, str] | None:
    """(module, attribute) for `path/to/file.py:name` or `package.module:name`; None if neither.

    A file path must be relative and inside the project to map onto an importable module.
    """
    if ":" not in entrypoint:
        return None
    target, attribute = entrypoint.rsplit(":", 1)
    if not target or not attribute.isidentifier():
        return None
    if target.endswith(".py"):
        path = Path(target)
        if path.is_absolute() or ".." in path.parts:
            return None
        parts = path.with_suffix("").parts
    else:
        parts = tuple(target.split("."))
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts), attribute


def load_flow(entrypoint: str, project_dir: Path = PROJECT_ROOT) -> Flow[..., Any]:
    """The flow object behind a deployment entrypoint, imported once per process.

    Entrypoints inside the project are imported as modules (the same objects every run and
    every other import see); anything else goes through Prefect's file loader.
    """
    mapped = entrypoint_module(entrypoint)
    if mapped is not None:
        module_name, attribute = mapped
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        if module is not None:
            candidate = getattr(module, attribute, None)
            if isinstance(candidate, Flow):
                return candidate
    target, attribute = entrypoint.rsplit(":", 1)
    path = Path(target)
    if not path.is_absolute():
        path = project_dir / path
    return load_flow_from_entrypoint(f"{path}:{attribute}")


@dataclass
class FlowCache:
    """Flows by entrypoint, deployments and API flows by id, as one worker has read them."""

    project_dir: Path = PROJECT_ROOT
    flows: dict[str, Flow[..., Any]] = field(default_factory=dict)
    deployments: dict[UUID, tuple[DeploymentResponse, float]] = field(default_factory=dict)
    api_flows: dict[UUID, APIFlow] = field(default_factory=dict)

    def preload(self, entrypoints: Iterable[str]) -> None:
        """Import the flows of `entrypoints` now (blocking: call it in a thread)."""
        for entrypoint in entrypoints:
            self.flows[entrypoint] = load_flow(entrypoint, self.project_dir)

    async def deployment(self, client: PrefectClient, deployment_id: UUID) -> DeploymentResponse:
        """The deployment, read again when the cached copy is older than a minute."""
        cached = self.deployments.get(deployment_id)
        # Re-read now and then so a redeployed entrypoint is picked up.
        if cached is None or time.monotonic() - cached[1] > DEPLOYMENT_CACHE_SECONDS:
            cached = (await client.read_deployment(deployment_id), time.monotonic())
            self.deployments[deployment_id] = cached
        return cached[0]

    async def api_flow(self, client: PrefectClient, flow_id: UUID) -> APIFlow:
        """The flow as the API knows it (read once)."""
        api_flow = self.api_flows.get(flow_id)
        if api_flow is None:
            api_flow = self.api_flows[flow_id] = await client.read_flow(flow_id)
        return api_flow

    async def resolve(self, client: PrefectClient, flow_run: FlowRun) -> Flow[..., Any]:
        """The flow object that executes `flow_run` (its deployment's entrypoint).

        Raises ObjectNotFound when the run's deployment no longer exists.
        """
        entrypoint = RUN_WORKFLOW_ENTRYPOINT
        if flow_run.deployment_id is not None:
            deployment = await self.deployment(client, flow_run.deployment_id)
            entrypoint = deployment.entrypoint or RUN_WORKFLOW_ENTRYPOINT
        flow = self.flows.get(entrypoint)
        if flow is None:
            flow = await anyio.to_thread.run_sync(load_flow, entrypoint, self.project_dir)
            self.flows[entrypoint] = flow
        return flow
