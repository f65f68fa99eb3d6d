"""Starting a job's Prefect flow run from the API (through Prefect's client, never flows/)."""

from __future__ import annotations

import logging
import threading
from typing import Protocol
from uuid import UUID

import httpcore
import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client

logger = logging.getLogger("supaflow.api.trigger")


class Trigger(Protocol):
    """Something that asks the orchestrator to run a job."""

    def start(self, job_id: str) -> str | None:
        """Create the run; return its id, or None when the orchestrator is unreachable."""

    def healthy(self) -> bool:
        """Whether the orchestrator answers."""


def without_connect_retries(client: SyncPrefectClient) -> None:
    """Make `client` give up on the first refused connection instead of retrying it.

    Prefect sets its HTTP transport to retry failed connections 3 times with backoff
    (about 1.5 s in all, whatever PREFECT_CLIENT_MAX_RETRIES says). In a request path that
    only delays the answer: a job that could not be handed over stays `pending` and the
    maintenance flow dispatches it. Done the way Prefect sets its default, after the client
    exists, so proxy and TLS settings stay Prefect's; a layout it does not recognise is left
    alone.
    """
    http = getattr(client, "_client", None)
    transport_for_url = getattr(http, "_transport_for_url", None)
    if not callable(transport_for_url):
        return
    transport = transport_for_url(httpx.URL(str(client.api_url)))
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore.ConnectionPool):
        pool._retries = 0


class PrefectTrigger:
    """Creates a flow run of the `run-workflow` deployment, the job id as idempotency key.

    The deployment id is looked up once and cached. Any failure (server down, deployment
    missing) is logged and reported as None: the job stays `pending` and the maintenance
    flow dispatches it later, so no job is lost; the idempotency key means none runs twice.
    """

    def __init__(self, deployment_name: str, *, api_url: str | None = None) -> None:
        self.deployment_name = deployment_name
        self.api_url = api_url
        self._deployment_id: UUID | None = None
        self._client: SyncPrefectClient | None = None
        self._lock = threading.Lock()

    def _get_client(self) -> SyncPrefectClient:
        with self._lock:
            if self._client is None:
                client = (
                    SyncPrefectClient(self.api_url)
                    if self.api_url
                    else get_client(sync_client=True)
                )
                without_connect_retries(client)
                client.__enter__()
                self._client = client
            return self._client

    def start(self, job_id: str) -> str | None:
        """Create the flow run for `job_id`, or return None if Prefect cannot take it now."""
        try:
            client = self._get_client()
            if self._deployment_id is None:
                self._deployment_id = client.read_deployment_by_name(self.deployment_name).id
            run = client.create_flow_run_from_deployment(
                self._deployment_id,
                parameters={"job_id": job_id},
                idempotency_key=job_id,
            )
        except Exception as exc:
            self._deployment_id = None
            logger.warning(
                "could not create a flow run; the job stays pending for the dispatcher",
                extra={"job_id": job_id, "error": f"{type(exc).__name__}: {exc}"},
            )
            return None
        return str(run.id)

    def healthy(self) -> bool:
        """True when the Prefect API answers its health check."""
        try:
            return self._get_client().api_healthcheck() is None
        except Exception:
            return False

    def close(self) -> None:
        """Close the underlying HTTP client."""
        with self._lock:
            if self._client is not None:
                self._client.__exit__(None, None, None)
                self._client = None
