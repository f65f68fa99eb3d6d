"""`WarmWorker`: the `supaflow-warm` Prefect worker type, running flow runs in its own process.

A `BaseWorker` like Prefect's process worker (through engine/prefect_private.py, which holds
every private Prefect use): it claims scheduled runs of its pool (worker/claiming.py), keeps
the worker heartbeat and the pool's status, and reports every state through the flow engine.
What changes is where a run executes: in a thread of this process (worker/execution.py).

- Bounded: at most `limit` runs at once (BaseWorker's capacity limiter).
- Woken, not only polled: with a database URL the worker LISTENs (engine/db/listen.py) and polls
  its pool at once when a job receives its flow run id; the regular poll stays the fallback.
- Cancellation (worker/cancellation.py), flow-run heartbeats (worker/heartbeat.py), crashed
  runs of dead workers on this host (worker/reaping.py, worker/ownership.py).

Start one with `worker.serve.serve_warm_worker(pool, limit)` or `python -m worker --pool P`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import anyio.abc
from prefect.client.schemas.objects import FlowRun
from prefect.context import SettingsContext, get_settings_context
from prefect.settings import Settings
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorkerResult

from engine.db.listen import NotificationListener
from engine.prefect_private import BaseWorkerAccess, CancellingObserver, new_cancelling_observer
from engine.settings import PROJECT_ROOT
from worker import claiming
from worker.cancellation import finish_cancellation, request_stop
from worker.command_options import DEFAULT_DRAIN_SECONDS, DEFAULT_HEARTBEAT_SECONDS, DEFAULT_POOL
from worker.execution import InProcessRun, run_settings, start_in_thread
from worker.flow_loading import RUN_WORKFLOW_ENTRYPOINT, FlowCache
from worker.heartbeat import emit_heartbeats
from worker.ownership import this_host, this_process_id
from worker.reaping import mark_crashed, reap_orphaned_runs

WORKER_TYPE = "supaflow-warm"
DESCRIPTION = "Runs flow runs in threads of a warm, long-lived worker process."


class WarmJobConfiguration(BaseJobConfiguration):
    """Job configuration of a warm run.

    `command` and `env` are accepted for compatibility but not applied: the run executes in
    the worker's process, with the worker's environment.
    """


class WarmVariables(BaseVariables):
    """Job variables of a `supaflow-warm` work pool (only the base ones)."""


class WarmWorkerResult(BaseWorkerResult):
    """What `WarmWorker.run` reports; status 0 means the run's final state is already set."""


class WarmWorker(BaseWorkerAccess[WarmJobConfiguration, WarmVariables, WarmWorkerResult]):
    """Executes its pool's flow runs in-process, in threads, up to `limit` at once."""

    type = WORKER_TYPE
    job_configuration = WarmJobConfiguration
    job_configuration_variables = WarmVariables

    def __init__(
        self,
        work_pool_name: str = DEFAULT_POOL,
        *,
        limit: int = 10,
        name: str | None = None,
        work_queues: list[str] | None = None,
        prefetch_seconds: float | None = None,
        database_url: str | None = None,
        listen: bool = True,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
        reap_seconds: float = 60.0,
        drain_seconds: float = DEFAULT_DRAIN_SECONDS,
        cancel_poll_seconds: float = 10.0,
        preload: Sequence[str] = (RUN_WORKFLOW_ENTRYPOINT,),
        project_dir: Path = PROJECT_ROOT,
    ) -> None:
        super().__init__(
            work_pool_name=work_pool_name,
            work_queues=work_queues,
            name=name,
            prefetch_seconds=prefetch_seconds,
            limit=limit,
        )
        self.database_url = database_url
        self.listen = listen
        self.heartbeat_seconds = heartbeat_seconds
        self.reap_seconds = reap_seconds
        self.drain_seconds = drain_seconds
        self.cancel_poll_seconds = cancel_poll_seconds
        self.preload = tuple(preload)
        self.project_dir = project_dir
        self.host = this_host()
        self.infrastructure_id = this_process_id(self.host)
        #: Set once the worker has synced with the API (and listens, when it should).
        self.ready = threading.Event()
        self.runs: dict[UUID, InProcessRun] = {}
        self.wakeups = 0
        #: Runs still executing when the worker stopped (marked Crashed, threads abandoned).
        self.abandoned = 0
        self.flow_cache = FlowCache(project_dir)
        self._listener: NotificationListener | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loops: anyio.abc.TaskGroup | None = None
        self._run_observer: CancellingObserver | None = None
        self._run_settings: Settings | None = None
        self._backlog = False

    @classmethod
    def get_description(cls) -> str:
        """What `prefect worker` and the UI say about this worker type."""
        return DESCRIPTION

    # -- life cycle -------------------------------------------------------------------------

    async def setup(self) -> None:
        """Sync with the API, import the flows, open the job store, start the side loops."""
        await super().setup()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._run_settings = run_settings(get_settings_context())
        await anyio.to_thread.run_sync(self._warm_up)
        self._run_observer = await self.exit_stack.enter_async_context(
            new_cancelling_observer(self._on_cancelling, self.cancel_poll_seconds)
        )
        self._loops = await self.exit_stack.enter_async_context(anyio.create_task_group())
        self._loops.start_soon(self._wake_loop)
        self._loops.start_soon(self._heartbeat_loop)
        self._loops.start_soon(self._reap_loop)
        if self.listen:
            await self._start_listening()
        self.ready.set()

    def _warm_up(self) -> None:
        """Import the preloaded flows and open the job store's pool before any run."""
        self.flow_cache.preload(self.preload)
        from engine.db.connection import shared_store

        shared_store()

    async def _start_listening(self) -> None:
        url = self.database_url
        if not url:
            url = await anyio.to_thread.run_sync(_configured_database_url)
        self._listener = NotificationListener(
            url, on_notify=self._notified, on_connect=self.wake_up
        )
        self._listener.start()
        await anyio.to_thread.run_sync(self._listener.connected.wait, 5.0)

    async def teardown(self, *exc_info: Any) -> None:
        """Stop taking work, let running flows finish (up to drain_seconds), then stop.

        Runs still executing after the drain die with the process: they are marked Crashed
        now, so nothing waits for a run nobody executes.
        """
        with anyio.CancelScope(shield=True):
            self.ready.clear()
            if self._listener is not None:
                await anyio.to_thread.run_sync(self._listener.stop)
            if self._loops is not None:
                self._loops.cancel_scope.cancel()
            with anyio.move_on_after(self.drain_seconds):
                while not all(run.done.is_set() for run in list(self.runs.values())):
                    await anyio.sleep(0.05)
            await self._conclude_or_abandon()
        if self.runs_task_group is not None:
            # run() calls still awaiting abandoned threads: their runs are concluded above.
            self.runs_task_group.cancel_scope.cancel()
        # Outside the shielded scope: the task groups on the exit stack were entered before it.
        await super().teardown(*exc_info)

    async def _conclude_or_abandon(self) -> None:
        for run in list(self.runs.values()):
            try:
                if run.done.is_set():
                    await self._conclude(run)
                else:
                    self.abandoned += 1
                    await self._crash(run, "the warm worker stopped while the run was in flight")
            except Exception:
                self.logger.exception("could not conclude flow run %s", run.flow_run.id)

    # -- running ----------------------------------------------------------------------------

    async def run(
        self,
        flow_run: FlowRun,
        configuration: WarmJobConfiguration,
        task_status: anyio.abc.TaskStatus[Any] | None = None,
    ) -> WarmWorkerResult:
        """Execute `flow_run` in a thread of this process; return when it has ended."""
        flow = await self.flow_cache.resolve(self.client, flow_run)
        run = InProcessRun(flow_run=flow_run, flow=flow)
        self.runs[flow_run.id] = run
        if self._run_observer is not None:
            self._run_observer.add_in_flight_flow_run_id(flow_run.id)
        # A settings context can be entered once: one per run, sharing the computed settings.
        base = get_settings_context()
        settings = SettingsContext(
            profile=base.profile, settings=self._run_settings or base.settings
        )
        finished = start_in_thread(run, settings)
        if task_status is not None:
            # BaseWorker stores this as the run's infrastructure_pid.
            task_status.started(self.infrastructure_id)
        await finished
        await self._conclude(run)
        return WarmWorkerResult(status_code=0, identifier=self.infrastructure_id)

    async def submit_run(self, flow_run: FlowRun) -> None:
        """Claim `flow_run` and start it in-process (worker/claiming.py)."""
        await claiming.submit_run(self, flow_run)

    async def _conclude(self, run: InProcessRun) -> None:
        """After the thread ended: finish cancellation or crash reporting, forget the run."""
        if run.concluded:
            return
        run.concluded = True
        run_logger = self.get_flow_run_logger(run.flow_run)
        try:
            if run.outcome == "cancelled":
                await finish_cancellation(self.client, run, run_logger)
            elif run.outcome == "crashed":
                await self._crash(run, f"the flow run's engine raised {run.error}")
            elif run.outcome == "aborted":
                run_logger.info("flow run not started: %s", run.error)
        finally:
            self.runs.pop(run.flow_run.id, None)
            if self._run_observer is not None:
                self._run_observer.remove_in_flight_flow_run_id(run.flow_run.id)
            if self._backlog:
                # The last poll left runs behind for lack of capacity; a slot is free now.
                self.wake_up()

    async def _crash(self, run: InProcessRun, message: str) -> None:
        """Mark the run Crashed (unless already final) and record it on the job."""
        await mark_crashed(self.client, run.flow_run, message, logger=self.logger)
        run.concluded = True

    # -- claiming: polling and waking -------------------------------------------------------

    async def submit_scheduled_flow_runs(self, flow_run_response: list[Any]) -> list[FlowRun]:
        """BaseWorker's submission of polled runs, remembering whether some did not fit."""
        submitted = await super().submit_scheduled_flow_runs(flow_run_response)
        # Fewer submitted than offered: the limit is reached; poll again when a slot frees.
        self._backlog = len(submitted) < len(flow_run_response)
        return submitted

    def wake_up(self) -> None:
        """Ask for an immediate poll of the work pool (thread-safe)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(wake.set)

    def _notified(self, payload: str) -> None:
        self.wakeups += 1
        self.wake_up()

    async def _wake_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            # Several notifications that arrive together cost one poll.
            self._wake.clear()
            if not self.has_synced:
                continue
            try:
                await self.get_and_submit_flow_runs()
            except Exception:
                self.logger.exception("poll after a wake-up failed; regular polling continues")

    # -- cancellation -----------------------------------------------------------------------

    def _on_cancelling(self, flow_run_id: UUID) -> None:
        run = self.runs.get(flow_run_id)
        if run is None or self.runs_task_group is None:
            return
        self.runs_task_group.start_soon(self.cancel_in_process, run)

    async def cancel_in_process(self, run: InProcessRun) -> None:
        """Stop `run` at its next boundary, before its next step starts.

        Once its thread has ended, the run's on_cancellation hooks run and it is marked
        Cancelled (worker/cancellation.py).
        """
        await request_stop(run, self.get_flow_run_logger(run.flow_run))

    async def cancel_run(self, flow_run_id: UUID) -> None:
        """Cancel a run of the pool: in-process when it executes here, else BaseWorker's way."""
        run = self.runs.get(flow_run_id)
        if run is not None:
            await self.cancel_in_process(run)
            return
        await super().cancel_run(flow_run_id)

    # -- heartbeats and crash detection -----------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_seconds)
            try:
                await self.send_heartbeats()
            except Exception:
                self.logger.exception("heartbeat failed")

    async def send_heartbeats(self) -> int:
        """Emit `prefect.flow-run.heartbeat` for every run executing here; returns how many."""
        return emit_heartbeats(self.runs.values())

    async def _reap_loop(self) -> None:
        while True:
            try:
                reaped = await self.reap_orphaned_runs()
                if reaped:
                    self.logger.warning("marked %d orphaned flow run(s) Crashed", len(reaped))
            except Exception:
                self.logger.exception("looking for orphaned flow runs failed")
            await anyio.sleep(self.reap_seconds)

    async def reap_orphaned_runs(self) -> list[UUID]:
        """Mark Crashed the pool's active runs whose warm worker process on this host is gone."""
        return await reap_orphaned_runs(
            self.client,
            pool=self.work_pool_name,
            host=self.host,
            is_ours=self._is_ours,
            logger=self.logger,
        )

    def _is_ours(self, flow_run: FlowRun) -> bool:
        return flow_run.id in self.runs or flow_run.infrastructure_pid == self.infrastructure_id


def _configured_database_url() -> str:
    from engine.db.connection import resolve_database_url
    from engine.settings import get_settings

    return resolve_database_url(get_settings())
