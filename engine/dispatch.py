"""Creating flow runs for jobs (maintenance dispatch and recovery)."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun

logger = logging.getLogger("supaflow.dispatch")


class RunStarter:
    """Creates job flow runs through one Prefect client, looking the deployment up once.

    A maintenance pass may create many runs; one client and one deployment lookup serve
    them all instead of a new connection and lookup per job.
    """

    def __init__(self, client: SyncPrefectClient, deployment_name: str) -> None:
        self.client = client
        self.deployment_name = deployment_name
        self._deployment_id: UUID | None = None

    def create(
        self, job_id: str, *, idempotency_key: str | None = None, state: Any = None
    ) -> FlowRun:
        """Create a flow run of the job's deployment (idempotency key: the job id by default)."""
        if self._deployment_id is None:
            self._deployment_id = self.client.read_deployment_by_name(self.deployment_name).id
        return self.client.create_flow_run_from_deployment(
            self._deployment_id,
            parameters={"job_id": job_id},
            idempotency_key=idempotency_key or job_id,
            state=state,
        )

    def try_start(self, job_id: str) -> str | None:
        """Create the job's flow run; None if Prefect refuses or cannot be reached.

        The idempotency key makes this safe to repeat: if the API already created a run for
        the job but could not record it, Prefect returns that same run instead of a second.
        """
        try:
            return str(self.create(job_id).id)
        except Exception as exc:
            logger.warning("could not create a flow run for job %s: %s", job_id, exc)
            return None
