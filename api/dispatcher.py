"""Handing new jobs to Prefect after the answer is sent, off the request threads.

The run itself is created by `engine.dispatch.RunStarter`, the same starter the maintenance
flow uses; this module only decides where that blocking call runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from engine.db.store import JobStore
from engine.dispatch import RunStarter

logger = logging.getLogger("supaflow.api")


class Dispatcher:
    """Creates flow runs on a small thread pool of its own, never on the request threads.

    When Prefect is slow, waiting dispatches would otherwise hold the threads that reads
    need. Past `max_backlog` waiting jobs, new ones are left `pending` for the maintenance
    flow instead of queueing without bound.
    """

    def __init__(
        self, starter: RunStarter, store: JobStore, *, workers: int = 4, max_backlog: int = 200
    ) -> None:
        self.starter = starter
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dispatch")
        self._slots = threading.BoundedSemaphore(max_backlog)

    def _start(self, job_id: str) -> None:
        """Create the job's flow run and record its id (none: the job stays pending)."""
        flow_run_id = self.starter.try_start(job_id)
        if flow_run_id is not None:
            self.store.set_flow_run(job_id, flow_run_id)

    async def dispatch(self, job_id: str) -> None:
        """Create the job's flow run off the request thread pool (or leave it to maintenance)."""
        if not self._slots.acquire(blocking=False):
            logger.warning(
                "dispatch backlog full; the job stays pending for maintenance",
                extra={"job_id": job_id},
            )
            return
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._start, job_id)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Finish queued dispatches and stop the threads."""
        self._executor.shutdown(wait=True)
