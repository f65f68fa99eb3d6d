"""Creating a job's flow run: the one run starter, shared by the API and maintenance.

The API starts each new job's run after answering; the maintenance flow starts the runs of jobs
the API could not hand over and resubmits crashed ones (flows/recovery.py). Both come here, so
the deployment lookup, the idempotency key and what a failure means are written once. This is
with engine/prefect_private.py, the only engine module that imports Prefect (import-linter
contract in pyproject.toml).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelled, Failed, Scheduled

logger = logging.getLogger("supaflow.dispatch")


class RunStarter:
    """Creates flow runs of one deployment for jobs, the job id as idempotency key.

    Built on a caller's open client (`RunStarter(client, name)`: a maintenance pass, whose many
    runs share one connection), or with `RunStarter.own_client(name)`, which opens its client
    on first use and closes it in `close()` (the API, for the life of the process). The
    deployment id is looked up once and forgotten after any failure, so a redeployed
    deployment is found again.
    """

    def __init__(
        self,
        client: SyncPrefectClient | None,
        deployment_name: str,
        *,
        api_url: str | None = None,
        fail_fast: bool = False,
    ) -> None:
        self.deployment_name = deployment_name
        self._client = client
        self._owns_client = client is None
        self._api_url = api_url
        self._fail_fast = fail_fast
        self._deployment_id: UUID | None = None
        self._lock = threading.Lock()

    @classmethod
    def own_client(
        cls, deployment_name: str, *, api_url: str | None = None, fail_fast: bool = False
    ) -> RunStarter:
        """A starter with a client of its own (PREFECT_API_URL unless `api_url` is given).

        `fail_fast` turns off the client's connect retries (`without_connect_retries`): for a
        caller that answers requests and would rather leave a job `pending` for maintenance.
        """
        return cls(None, deployment_name, api_url=api_url, fail_fast=fail_fast)

    @property
    def client(self) -> SyncPrefectClient:
        """The Prefect client; an owned one is opened here, on first use."""
        with self._lock:
            if self._client is None:
                client = (
                    SyncPrefectClient(self._api_url)
                    if self._api_url
                    else get_client(sync_client=True)
                )
                if self._fail_fast:
                    # Imported here: the module also loads Prefect's worker machinery.
                    from engine.prefect_private import without_connect_retries

                    without_connect_retries(client)
                client.__enter__()
                self._client = client
            return self._client

    def create(
        self,
        job_id: str,
        *,
        idempotency_key: str | None = None,
        state: Any = None,
        scheduled_for: datetime | None = None,
    ) -> FlowRun:
        """Create a flow run of the job's deployment (idempotency key: the job id by default).

        A future `scheduled_for` (a delayed start) creates it Scheduled for that time: the
        Prefect UI lists it as upcoming and Prefect starts it then. One already past starts
        at once."""
        if state is None and scheduled_for is not None and scheduled_for > datetime.now(UTC):
            state = Scheduled(scheduled_time=scheduled_for, message="delayed start")
        client = self.client
        if self._deployment_id is None:
            self._deployment_id = client.read_deployment_by_name(self.deployment_name).id
        return client.create_flow_run_from_deployment(
            self._deployment_id,
            parameters={"job_id": job_id},
            idempotency_key=idempotency_key or job_id,
            state=state,
        )

    def try_start(
        self,
        job_id: str,
        idempotency_key: str | None = None,
        *,
        scheduled_for: datetime | None = None,
    ) -> str | None:
        """Create the job's flow run; its id, or None if Prefect refuses or cannot be reached.

        None leaves the job `pending` for the maintenance flow, so no job is lost. The
        idempotency key (the job id, or a rerun's own key) makes this safe to repeat: if a run
        was already created for the job but not recorded, Prefect returns that same run
        instead of a second. `scheduled_for`: a delayed start's time (see `create`).
        """
        try:
            run = self.create(job_id, idempotency_key=idempotency_key, scheduled_for=scheduled_for)
            return str(run.id)
        except Exception as exc:
            self._deployment_id = None
            logger.warning(
                "could not create a flow run; the job stays pending for the dispatcher",
                extra={"job_id": job_id, "error": f"{type(exc).__name__}: {exc}"},
            )
            return None

    def cancel(self, flow_run_id: str, message: str) -> bool:
        """Set the flow run Cancelled (forced: a scheduled, paused or rescheduled run never
        starts again); True once Prefect has it, or if the run already ended. False when
        Prefect refuses or cannot be reached: the job is failed already, and a run that starts
        later finds it finished and does nothing."""
        try:
            run = self.client.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.is_final():
                return True
            self.client.set_flow_run_state(
                UUID(flow_run_id), Cancelled(message=message), force=True
            )
            return True
        except Exception as exc:
            logger.warning(
                "could not set the flow run Cancelled",
                extra={"flow_run_id": flow_run_id, "error": f"{type(exc).__name__}: {exc}"},
            )
            return False

    def resume(self, flow_run_id: str) -> bool:
        """Resume a flow run paused at a wait (Prefect moves it to Scheduled "Resuming" and
        a worker runs it again); True once resumed, or when it is not paused (already
        resumed, or still running: it finds the decision before it pauses). False when
        Prefect refuses or cannot be reached: maintenance resumes decided waits later."""
        try:
            run = self.client.read_flow_run(UUID(flow_run_id))
            if run.state is None or not run.state.is_paused():
                return True
            result = self.client.resume_flow_run(UUID(flow_run_id))
            return str(result.status.value).upper() == "ACCEPT"
        except Exception as exc:
            logger.warning(
                "could not resume the flow run",
                extra={"flow_run_id": flow_run_id, "error": f"{type(exc).__name__}: {exc}"},
            )
            return False

    def fail(self, flow_run_id: str, message: str) -> bool:
        """Set a waiting flow run Failed (its job failed at a wait's deadline); True once
        Prefect has it or the run already ended, False when Prefect is not reachable."""
        try:
            run = self.client.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.is_final():
                return True
            self.client.set_flow_run_state(UUID(flow_run_id), Failed(message=message), force=True)
            return True
        except Exception as exc:
            logger.warning(
                "could not set the flow run Failed",
                extra={"flow_run_id": flow_run_id, "error": f"{type(exc).__name__}: {exc}"},
            )
            return False

    def healthy(self) -> bool:
        """True when the Prefect API answers its health check."""
        try:
            return self.client.api_healthcheck() is None
        except Exception:
            return False

    def close(self) -> None:
        """Close the client if this starter opened it (a caller's client is the caller's)."""
        with self._lock:
            if self._owns_client and self._client is not None:
                self._client.__exit__(None, None, None)
                self._client = None
