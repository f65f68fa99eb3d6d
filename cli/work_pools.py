"""The work pools of the stack: Prefect's process pool and the warm worker's pool."""

from __future__ import annotations

from collections.abc import Mapping

PROCESS_POOL = "local-process"
WARM_WORKER_TYPE = "supaflow-warm"


def create_work_pools(prefect_api_url: str, pools: Mapping[str, str]) -> None:
    """Create the work pools `{name: worker type}` ("process" or "supaflow-warm") that do not
    exist yet. Through Prefect's client: the Prefect CLI cannot create a pool of the warm
    worker's type (it knows only the worker types of installed Prefect collections)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    from worker.worker import WarmWorker

    templates = {w.type: w.get_default_base_job_template() for w in (ProcessWorker, WarmWorker)}
    with SyncPrefectClient(prefect_api_url) as client:
        for name, kind in pools.items():
            create = WorkPoolCreate(name=name, type=kind, base_job_template=templates[kind])
            try:
                client.create_work_pool(create)
            except ObjectAlreadyExists:
                continue
