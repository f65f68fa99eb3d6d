"""A warm Prefect worker: flow runs execute inside the worker process, in threads.

A process worker starts a new Python for every flow run (about 2 s of imports, then polling
and a flush at the end). This worker type (`supaflow-warm`) is a `BaseWorker` like Prefect's
process worker: it claims scheduled runs of its work pool through the same path (the Pending
proposal only succeeds once, so two workers never run the same flow run), keeps the worker
heartbeat and the work pool's status, and reports every state through the flow engine. What
changes is where the run executes: `run()` hands the flow run to `prefect.flow_engine.run_flow`
in a thread of this process, so modules are already imported, the job store's connection pool
is open, and the run's task runs, logs, retries and states still reach the API as usual.

- Bounded: at most `limit` runs at once (BaseWorker's capacity limiter); each run has its own
  thread and its own engine, so an exception escaping one run ends that thread only.
- Woken, not only polled: with a database URL the worker LISTENs (worker/wake.py) and polls its
  pool at once when a job receives its flow run id; the regular poll stays as the fallback.
- Cancellation: the worker observes Cancelling flow runs (websocket, polling as fallback). A
  run executing here gets a stop request through the engine's own boundary check, so it stops
  before its next step starts (a step already running finishes); then the flow's
  on_cancellation hooks run and the run is marked Cancelled, in the order Prefect's runner
  uses for processes (stop, hooks, Cancelled).
- Crash detection: the per-run heartbeat thread of the flow engine is off here (its shutdown
  costs about 1 s per in-process run); instead the worker emits the same
  `prefect.flow-run.heartbeat` event for every run it holds, in one loop (run_workflow keeps
  `jobs.heartbeat_at` fresh itself). Each run's `infrastructure_pid` names this process
  (`warm:<host>:<pid>:<start ticks>`); a warm worker that starts, and every `reap_seconds`
  after, marks Crashed the Running/Pending runs of its pool whose owner process on this host is
  gone (kill -9, OOM), and records `flow_run_crashed` on the job. A run whose engine crashed
  (a BaseException escaped it) is Crashed by the engine and gets the same job event. Jobs stay
  non-terminal: resubmission is the maintenance flow's decision.

Start one with `serve_warm_worker(pool, limit)` or `python -m worker.worker --pool P`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import importlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import anyio
import anyio.abc
from prefect import Flow
from prefect._flow_run_suspension import mark_flow_run_suspension_requested
from prefect._internal.observers import FlowRunCancellingObserver
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import Flow as APIFlow
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.responses import DeploymentResponse, OrchestrationResult
from prefect.context import SettingsContext, get_settings_context
from prefect.events import emit_event
from prefect.exceptions import Abort, ObjectAlreadyExists, ObjectNotFound, Pause
from prefect.flow_engine import run_flow
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_WORKER_QUERY_SECONDS,
    temporary_settings,
)
from prefect.states import Cancelled, Cancelling, Crashed
from prefect.utilities.callables import parameter_schema
from prefect.workers.base import (
    BaseJobConfiguration,
    BaseVariables,
    BaseWorker,
    BaseWorkerResult,
)

from engine.settings import PROJECT_ROOT
from worker.wake import NotificationListener

WORKER_TYPE = "supaflow-warm"
DEFAULT_POOL = "supaflow-warm"
RUN_WORKFLOW_ENTRYPOINT = "flows/run_workflow.py:run_workflow"
WARM_DEPLOYMENT = "run-workflow-warm"
#: How long a worker trusts its copy of a deployment (entrypoint) before reading it again.
DEPLOYMENT_CACHE_SECONDS = 60.0

logger = logging.getLogger("supaflow.warm_worker")


# -- who owns a run: pure helpers ------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """The warm worker process named by a flow run's `infrastructure_pid`."""

    host: str
    pid: int
    start: str


def infrastructure_id(host: str, pid: int, start: str) -> str:
    """The `infrastructure_pid` a warm worker stamps on the runs it executes."""
    return f"warm:{host}:{pid}:{start}"


def parse_infrastructure_id(value: str | None) -> Owner | None:
    """The owner named by `value`, or None when it is not a warm worker's id."""
    if not value:
        return None
    parts = value.split(":")
    if len(parts) != 4 or parts[0] != "warm" or not parts[1] or not parts[2].isdigit():
        return None
    return Owner(host=parts[1], pid=int(parts[2]), start=parts[3])


def owner_is_gone(value: str | None, *, host: str, alive: Callable[[int, str], bool]) -> bool:
    """True when `value` names a warm worker process on `host` that no longer exists.

    Runs owned elsewhere (another host, another worker type) are never judged here: only the
    heartbeat can tell whether those are alive.
    """
    owner = parse_infrastructure_id(value)
    if owner is None or owner.host != host:
        return False
    return not alive(owner.pid, owner.start)


def _proc_stat(pid: int) -> list[str]:
    """Fields 3.. of /proc/<pid>/stat (Linux), [] when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[-1].split()


def process_start_token(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, Linux); '' when unknown.

    With the pid it names one process, even after the pid is reused by another.
    """
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else ""


def process_alive(pid: int, start: str) -> bool:
    """Whether process `pid` runs and is the one that started at `start` (when known).

    A zombie (exited, not yet reaped by its parent) counts as gone.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields and fields[0] in ("Z", "X"):
        return False
    return not (start and len(fields) > 19 and fields[19] != start)


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


# -- the worker ---------------------------------------------------------------------------------


class WarmJobConfiguration(BaseJobConfiguration):
    """Job configuration of a warm run.

    `command` and `env` are accepted for compatibility but not applied: the run executes in
    the worker's process, with the worker's environment.
    """


class WarmVariables(BaseVariables):
    """Job variables of a `supaflow-warm` work pool (only the base ones)."""


class WarmWorkerResult(BaseWorkerResult):
    """What `WarmWorker.run` reports; status 0 means the run's final state is already set."""


Outcome = Literal["finished", "cancelled", "aborted", "crashed"]


@dataclass
class InProcessRun:
    """One flow run executing in this process."""

    flow_run: FlowRun
    flow: Flow[..., Any]
    started_at: float = field(default_factory=time.monotonic)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    error: str | None = None
    concluded: bool = False

    @property
    def job_id(self) -> str | None:
        """The job this run executes, when it is a run-workflow run."""
        value = (self.flow_run.parameters or {}).get("job_id")
        return str(value) if value else None


def _execute_flow(run: InProcessRun, settings: SettingsContext) -> None:
    """Thread body: run the flow through Prefect's engine and record how it ended."""
    try:
        with settings:
            if run.cancel_requested.is_set():
                run.outcome = "cancelled"
                return
            try:
                run_flow(run.flow, flow_run=run.flow_run, return_type="state")
                run.outcome = "finished"
            except Pause:
                # The stop request raised at the engine's next boundary (cancellation).
                run.outcome = "cancelled" if run.cancel_requested.is_set() else "finished"
            except Abort as exc:
                # The API refused to let the run start (already claimed, cancelled, deleted).
                run.outcome = "aborted"
                run.error = str(exc)
    except BaseException as exc:
        # Whatever escaped the engine ends this thread only; the engine has already proposed
        # Crashed when it could, and the worker checks that below.
        run.outcome = "crashed"
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        run.done.set()


class WarmWorker(BaseWorker[WarmJobConfiguration, WarmVariables, WarmWorkerResult]):
    """Executes its pool's flow runs in-process, in threads, up to `limit` at once."""

    type = WORKER_TYPE
    job_configuration = WarmJobConfiguration
    job_configuration_variables = WarmVariables
    _description = "Runs flow runs in threads of a warm, long-lived worker process."

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
        heartbeat_seconds: float = 30.0,
        reap_seconds: float = 60.0,
        drain_seconds: float = 30.0,
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
        self.host = socket.gethostname().replace(":", "-")
        self.infrastructure_id = infrastructure_id(
            self.host, os.getpid(), process_start_token(os.getpid())
        )
        #: Set once the worker has synced with the API (and listens, when it should).
        self.ready = threading.Event()
        self.runs: dict[UUID, InProcessRun] = {}
        self.wakeups = 0
        #: Runs still executing when the worker stopped (marked Crashed, threads abandoned).
        self.abandoned = 0
        self._flows: dict[str, Flow[..., Any]] = {}
        self._deployments: dict[UUID, tuple[DeploymentResponse, float]] = {}
        self._api_flows: dict[UUID, APIFlow] = {}
        self._listener: NotificationListener | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loops: anyio.abc.TaskGroup | None = None
        self._run_observer: FlowRunCancellingObserver | None = None
        self._run_settings: Any = None
        self._backlog = False

    # -- life cycle -------------------------------------------------------------------------

    async def setup(self) -> None:
        """Sync with the API, import the flows, open the job store, start the side loops."""
        await super().setup()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        base = get_settings_context()
        # The flow engine's own heartbeat thread costs ~1 s at the end of every in-process
        # run (it sleeps in 1 s steps and is joined); this worker emits those heartbeats.
        self._run_settings = base.settings.copy_with_update(
            updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        )
        await anyio.to_thread.run_sync(self._warm_up)
        self._run_observer = await self._exit_stack.enter_async_context(
            FlowRunCancellingObserver(
                on_cancelling=self._on_cancelling,
                polling_interval=self.cancel_poll_seconds,
            )
        )
        self._loops = await self._exit_stack.enter_async_context(anyio.create_task_group())
        self._loops.start_soon(self._wake_loop)
        self._loops.start_soon(self._heartbeat_loop)
        self._loops.start_soon(self._reap_loop)
        if self.listen:
            url = self.database_url
            if not url:
                url = await anyio.to_thread.run_sync(_configured_database_url)
            self._listener = NotificationListener(
                url, on_notify=self._notified, on_connect=self.wake_up
            )
            self._listener.start()
            await anyio.to_thread.run_sync(self._listener.connected.wait, 5.0)
        self.ready.set()

    def _warm_up(self) -> None:
        """Import the preloaded flows and open the job store's pool before any run."""
        for entrypoint in self.preload:
            self._flows[entrypoint] = load_flow(entrypoint, self.project_dir)
        from engine.db.connection import shared_store

        shared_store()

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
            for run in list(self.runs.values()):
                try:
                    if run.done.is_set():
                        await self._conclude(run)
                    else:
                        self.abandoned += 1
                        await self._crash(
                            run, "the warm worker stopped while the run was in flight"
                        )
                except Exception:
                    self._logger.exception("could not conclude flow run %s", run.flow_run.id)
        if self._runs_task_group is not None:
            # run() calls still awaiting abandoned threads: their runs are concluded above.
            self._runs_task_group.cancel_scope.cancel()
        # Outside the shielded scope: the task groups on the exit stack were entered before it.
        await super().teardown(*exc_info)

    # -- running ----------------------------------------------------------------------------

    async def run(
        self,
        flow_run: FlowRun,
        configuration: WarmJobConfiguration,
        task_status: anyio.abc.TaskStatus[Any] | None = None,
    ) -> WarmWorkerResult:
        """Execute `flow_run` in a thread of this process; return when it has ended."""
        flow = await self._resolve_flow(flow_run)
        run = InProcessRun(flow_run=flow_run, flow=flow)
        self.runs[flow_run.id] = run
        if self._run_observer is not None:
            self._run_observer.add_in_flight_flow_run_id(flow_run.id)
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        # A settings context can be entered once: one per run, sharing the computed settings.
        base = get_settings_context()
        settings = SettingsContext(
            profile=base.profile, settings=self._run_settings or base.settings
        )
        context = contextvars.copy_context()

        def target() -> None:
            context.run(_execute_flow, run, settings)
            # RuntimeError: the loop is gone, the worker is shutting down.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, finished)

        threading.Thread(target=target, name=f"flow-run-{flow_run.id}", daemon=True).start()
        if task_status is not None:
            # BaseWorker stores this as the run's infrastructure_pid.
            task_status.started(self.infrastructure_id)
        await finished
        await self._conclude(run)
        return WarmWorkerResult(status_code=0, identifier=self.infrastructure_id)

    async def _deployment(self, deployment_id: UUID) -> DeploymentResponse:
        cached = self._deployments.get(deployment_id)
        # Re-read now and then so a redeployed entrypoint is picked up.
        if cached is None or time.monotonic() - cached[1] > DEPLOYMENT_CACHE_SECONDS:
            cached = (await self.client.read_deployment(deployment_id), time.monotonic())
            self._deployments[deployment_id] = cached
        return cached[0]

    async def _api_flow(self, flow_id: UUID) -> APIFlow:
        api_flow = self._api_flows.get(flow_id)
        if api_flow is None:
            api_flow = self._api_flows[flow_id] = await self.client.read_flow(flow_id)
        return api_flow

    async def _resolve_flow(self, flow_run: FlowRun) -> Flow[..., Any]:
        entrypoint = RUN_WORKFLOW_ENTRYPOINT
        if flow_run.deployment_id is not None:
            deployment = await self._deployment(flow_run.deployment_id)
            entrypoint = deployment.entrypoint or RUN_WORKFLOW_ENTRYPOINT
        flow = self._flows.get(entrypoint)
        if flow is None:
            flow = await anyio.to_thread.run_sync(load_flow, entrypoint, self.project_dir)
            self._flows[entrypoint] = flow
        return flow

    async def _submit_run(self, flow_run: FlowRun) -> None:
        """Claim `flow_run` (the Pending proposal) and start it: BaseWorker's path, leaner.

        BaseWorker reads the deployment twice and the flow, then writes labels and a
        Submitting state before it starts a run: 0.15-0.25 s per run. Here deployment and
        flow come from a cache, labels and the infrastructure pid are written while the run
        already executes, and Submitting is skipped (Pending -> Running is a valid path).
        The claim itself is unchanged: only one Pending proposal succeeds per run.
        """
        assert self._runs_task_group is not None
        try:
            try:
                await self._resolve_flow(flow_run)
            except ObjectNotFound:
                self._release_limit_slot(flow_run.id)
                await self._mark_flow_run_as_cancelled(
                    flow_run,
                    state_updates={
                        "message": f"Deployment {flow_run.deployment_id} no longer exists, "
                        "cancelled run."
                    },
                )
                return
            if not await self._propose_pending_state(flow_run):
                self._release_limit_slot(flow_run.id)
                return
            started = await self._runs_task_group.start(
                self._submit_run_and_capture_errors, flow_run
            )
            if started and not isinstance(started, Exception):
                self._runs_task_group.start_soon(self._record_owner, flow_run, str(started))
            else:
                self._release_limit_slot(flow_run.id)
        finally:
            self._submitting_flow_run_ids.discard(flow_run.id)
            if self._cancelling_observer is not None:
                self._cancelling_observer.remove_in_flight_flow_run_id(flow_run.id)

    async def _record_owner(self, flow_run: FlowRun, identifier: str) -> None:
        """Stamp the run with this process's id and this worker's labels (UI, crash checks)."""
        try:
            await self.client.update_flow_run(
                flow_run_id=flow_run.id, infrastructure_pid=identifier
            )
            await self._give_worker_labels_to_flow_run(flow_run.id)
        except Exception:
            self.get_flow_run_logger(flow_run).warning(
                "could not record the worker on the flow run", exc_info=True
            )

    async def _submit_run_and_capture_errors(
        self,
        flow_run: FlowRun,
        task_status: anyio.abc.TaskStatus[Any] | None = None,
    ) -> BaseWorkerResult | Exception:
        run_logger = self.get_flow_run_logger(flow_run)
        configuration = WarmJobConfiguration()
        submitted_event = None
        status = _TrackedStatus(task_status)
        try:
            deployment = (
                await self._deployment(flow_run.deployment_id) if flow_run.deployment_id else None
            )
            configuration.prepare_for_flow_run(
                flow_run=flow_run,
                deployment=deployment,
                flow=await self._api_flow(flow_run.flow_id),
                work_pool=self.work_pool,
                worker_name=self.name,
                worker_id=self.backend_id,
            )
            submitted_event = self._emit_flow_run_submitted_event(configuration)
            result = await self.run(
                flow_run=flow_run, configuration=configuration, task_status=status
            )
        except Exception as exc:
            if not status.done:
                run_logger.exception("could not start flow run %s in-process", flow_run.id)
                status.started(exc)
                await self._propose_crashed_state(
                    flow_run, f"could not start the run in-process: {type(exc).__name__}: {exc}"
                )
            else:
                run_logger.exception("flow run %s ended with a worker error", flow_run.id)
            return exc
        finally:
            self._release_limit_slot(flow_run.id)
        if submitted_event is not None:
            self._emit_flow_run_executed_event(result, configuration, submitted_event)
        return result

    async def _conclude(self, run: InProcessRun) -> None:
        """After the thread ended: finish cancellation or crash reporting, forget the run."""
        if run.concluded:
            return
        run.concluded = True
        run_logger = self.get_flow_run_logger(run.flow_run)
        try:
            if run.outcome == "cancelled":
                await self._finish_cancellation(run)
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
        await mark_crashed(self.client, run.flow_run, message, logger=self._logger)
        run.concluded = True

    # -- claiming: polling and waking -------------------------------------------------------

    async def _submit_scheduled_flow_runs(self, flow_run_response: list[Any]) -> list[FlowRun]:
        submitted = await super()._submit_scheduled_flow_runs(flow_run_response)
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
            if not self._has_successfully_synced:
                continue
            try:
                await self.get_and_submit_flow_runs()
            except Exception:
                self._logger.exception("poll after a wake-up failed; regular polling continues")

    # -- heartbeats and crash detection -----------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_seconds)
            try:
                await self.send_heartbeats()
            except Exception:
                self._logger.exception("heartbeat failed")

    async def send_heartbeats(self) -> int:
        """Emit `prefect.flow-run.heartbeat` for every run executing here; returns how many.

        `jobs.heartbeat_at` is the flow's own business (run_workflow beats while it works).
        """
        runs = [run for run in self.runs.values() if not run.done.is_set()]
        for run in runs:
            flow_run = run.flow_run
            related = [
                {
                    "prefect.resource.id": f"prefect.flow.{flow_run.flow_id}",
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": run.flow.name,
                }
            ]
            if flow_run.deployment_id:
                related.append(
                    {
                        "prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                        "prefect.resource.role": "deployment",
                    }
                )
            emit_event(
                event="prefect.flow-run.heartbeat",
                resource={
                    "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                    "prefect.resource.name": flow_run.name or "",
                },
                related=related,
            )
        return len(runs)

    async def _reap_loop(self) -> None:
        while True:
            try:
                reaped = await self.reap_orphaned_runs()
                if reaped:
                    self._logger.warning("marked %d orphaned flow run(s) Crashed", len(reaped))
            except Exception:
                self._logger.exception("looking for orphaned flow runs failed")
            await anyio.sleep(self.reap_seconds)

    async def reap_orphaned_runs(self) -> list[UUID]:
        """Mark Crashed the pool's active runs whose warm worker process on this host is gone."""
        flow_runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                )
            ),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[self._work_pool_name])),
            limit=200,
        )
        reaped: list[UUID] = []
        for flow_run in flow_runs:
            if flow_run.id in self.runs or flow_run.infrastructure_pid == self.infrastructure_id:
                continue
            if not owner_is_gone(flow_run.infrastructure_pid, host=self.host, alive=process_alive):
                continue
            await mark_crashed(
                self.client,
                flow_run,
                f"the warm worker that executed it ({flow_run.infrastructure_pid}) is gone",
                logger=self._logger,
            )
            reaped.append(flow_run.id)
        return reaped

    # -- cancellation -----------------------------------------------------------------------

    def _on_cancelling(self, flow_run_id: UUID) -> None:
        run = self.runs.get(flow_run_id)
        if run is None or self._runs_task_group is None:
            return
        self._runs_task_group.start_soon(self.cancel_in_process, run)

    async def cancel_in_process(self, run: InProcessRun) -> None:
        """Stop `run` at its next boundary (before its next step starts).

        The engine checks a per-flow-run stop request (Prefect's suspension request) before
        every task run and state change; the request carries a Cancelling state, raised as
        `Pause` there. `_conclude` then runs the hooks and marks the run Cancelled.
        """
        if run.cancel_requested.is_set():
            return
        run.cancel_requested.set()
        self.get_flow_run_logger(run.flow_run).info("stopping flow run: cancellation requested")
        request: State[Any] = Cancelling(message="Flow run was cancelled.")
        # The engine registers the request slot when it starts; until then the thread checks
        # cancel_requested itself before starting the engine.
        while not run.done.is_set():
            if mark_flow_run_suspension_requested(run.flow_run.id, request):
                return
            await anyio.sleep(0.05)

    async def _cancel_run(self, flow_run_id: UUID) -> None:
        run = self.runs.get(flow_run_id)
        if run is not None:
            await self.cancel_in_process(run)
            return
        await super()._cancel_run(flow_run_id)

    async def _finish_cancellation(self, run: InProcessRun) -> None:
        state: State[Any] = Cancelling(message="Flow run was cancelled.")
        await anyio.to_thread.run_sync(_run_cancellation_hooks, run.flow, run.flow_run, state)
        try:
            await self.client.set_flow_run_state(
                run.flow_run.id, Cancelled(message="Flow run was cancelled."), force=True
            )
        except ObjectNotFound:
            return
        self.get_flow_run_logger(run.flow_run).info("flow run cancelled")


@dataclass
class _TrackedStatus:
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


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _configured_database_url() -> str:
    from engine.db.connection import resolve_database_url
    from engine.settings import get_settings

    return resolve_database_url(get_settings())


def _record_crash(job_id: str, flow_run_id: str, message: str) -> None:
    from engine.db.connection import shared_store

    shared_store().add_event(
        job_id, "flow_run_crashed", detail={"flow_run_id": flow_run_id, "error": message}
    )


def _run_cancellation_hooks(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    run_logger = logging.getLogger("supaflow.warm_worker.hooks")
    for hook in flow.on_cancellation_hooks or []:
        try:
            hook(flow=flow, flow_run=flow_run, state=state)
        except Exception:
            run_logger.exception("on_cancellation hook failed for flow run %s", flow_run.id)


async def mark_crashed(
    client: PrefectClient, flow_run: FlowRun, message: str, *, logger: Any = logger
) -> bool:
    """Propose Crashed for `flow_run` unless it is already final; record it on its job.

    True when this call changed the state. The job keeps its status (the maintenance flow
    decides about resubmission); its event log gets `flow_run_crashed`.
    """
    try:
        current = await client.read_flow_run(flow_run.id)
    except ObjectNotFound:
        return False
    changed = False
    if current.state is None or not current.state.is_final():
        try:
            result: OrchestrationResult[Any] = await client.set_flow_run_state(
                flow_run.id, Crashed(message=message), force=True
            )
            changed = result.state is not None and result.state.is_crashed()
        except ObjectNotFound:
            return False
    if current.state is not None and current.state.is_crashed() and not changed:
        # The engine reported its own crash; still tell the job.
        changed = True
    job_id = (flow_run.parameters or {}).get("job_id")
    if changed and job_id:
        try:
            await anyio.to_thread.run_sync(_record_crash, str(job_id), str(flow_run.id), message)
        except Exception:
            logger.exception("could not record the crash of flow run %s on its job", flow_run.id)
    if changed:
        logger.warning("flow run %s crashed: %s", flow_run.id, message)
    return changed


# -- pool and deployment ------------------------------------------------------------------------


async def ensure_work_pool(client: PrefectClient, pool: str = DEFAULT_POOL) -> None:
    """Create the `supaflow-warm` work pool if it does not exist (works offline)."""
    try:
        await client.read_work_pool(pool)
        return
    except ObjectNotFound:
        pass
    with contextlib.suppress(ObjectAlreadyExists):  # created by someone else meanwhile
        await client.create_work_pool(
            WorkPoolCreate(
                name=pool,
                type=WORKER_TYPE,
                base_job_template=WarmWorker.get_default_base_job_template(),
            )
        )


async def ensure_warm_deployment_async(
    pool: str = DEFAULT_POOL,
    name: str = WARM_DEPLOYMENT,
    *,
    entrypoint: str = RUN_WORKFLOW_ENTRYPOINT,
    project_dir: Path = PROJECT_ROOT,
) -> str:
    """Create or update the deployment that runs jobs on the warm pool; returns its full name.

    It mirrors prefect.yaml's `run-workflow` (same flow, entrypoint and parameters) on the
    warm pool, so both can exist at once and settings choose which one the API starts.
    """
    flow = load_flow(entrypoint, project_dir)
    async with get_client() as client:
        await ensure_work_pool(client, pool)
        flow_id = await client.create_flow_from_name(flow.name)
        await client.create_deployment(
            flow_id=flow_id,
            name=name,
            entrypoint=entrypoint,
            path=str(project_dir),
            work_pool_name=pool,
            work_queue_name="default",
            parameter_openapi_schema=parameter_schema(flow).model_dump(),
            description="Runs one job in a warm worker (in-process, no process per run).",
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(project_dir)}}
            ],
        )
    return f"{flow.name}/{name}"


def ensure_warm_deployment(pool: str = DEFAULT_POOL, name: str = WARM_DEPLOYMENT) -> str:
    """Synchronous `ensure_warm_deployment_async` (for the CLI and tests)."""
    return anyio.run(ensure_warm_deployment_async, pool, name)


# -- serving ------------------------------------------------------------------------------------


async def run_worker(
    worker: WarmWorker,
    *,
    stop: threading.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Run `worker` until SIGINT/SIGTERM (when `handle_signals`) or until `stop` is set."""
    async with anyio.create_task_group() as group:

        async def on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    group.cancel_scope.cancel()
                    return

        async def on_stop(event: threading.Event) -> None:
            while not event.is_set():
                await anyio.sleep(0.1)
            group.cancel_scope.cancel()

        if handle_signals:
            group.start_soon(on_signal)
        if stop is not None:
            group.start_soon(on_stop, stop)
        await worker.start(printer=logger.info)
        group.cancel_scope.cancel()


def serve_warm_worker(
    pool: str = DEFAULT_POOL,
    limit: int = 10,
    *,
    query_seconds: float | None = None,
    stop: threading.Event | None = None,
    handle_signals: bool = True,
    **options: Any,
) -> int:
    """Start a warm worker on `pool` executing up to `limit` runs at once; blocks until stopped.

    `query_seconds` overrides PREFECT_WORKER_QUERY_SECONDS (the fallback poll); `options` go
    to `WarmWorker` (name, database_url, listen, heartbeat_seconds, drain_seconds, ...).
    Returns how many runs were still executing at the end of the drain (marked Crashed; their
    threads cannot be stopped, so a process that must exit now should use `os._exit`).
    """
    worker = WarmWorker(pool, limit=limit, **options)
    updates = {PREFECT_WORKER_QUERY_SECONDS: query_seconds} if query_seconds else {}
    with temporary_settings(updates=updates):
        asyncio.run(run_worker(worker, stop=stop, handle_signals=handle_signals))
    return worker.abandoned


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m worker.worker --pool supaflow-warm --limit 10`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pool", default=DEFAULT_POOL, help="Work pool (created if missing).")
    parser.add_argument("--limit", type=int, default=10, help="Most runs at once.")
    parser.add_argument("--name", default=None, help="Worker name (default: random).")
    parser.add_argument("--query-seconds", type=float, default=None, help="Fallback poll interval.")
    parser.add_argument("--heartbeat-seconds", type=float, default=30.0)
    parser.add_argument("--drain-seconds", type=float, default=30.0)
    parser.add_argument(
        "--no-listen", action="store_true", help="Poll only (no LISTEN/NOTIFY wake-ups)."
    )
    parser.add_argument(
        "--deploy",
        action="store_true",
        help=f"Create the pool and the '{WARM_DEPLOYMENT}' deployment before starting.",
    )
    parser.add_argument("--deploy-only", action="store_true", help="Deploy, then exit.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.deploy or args.deploy_only:
        print(ensure_warm_deployment(args.pool), flush=True)
        if args.deploy_only:
            return
    abandoned = serve_warm_worker(
        args.pool,
        args.limit,
        query_seconds=args.query_seconds,
        name=args.name,
        listen=not args.no_listen,
        heartbeat_seconds=args.heartbeat_seconds,
        drain_seconds=args.drain_seconds,
    )
    if abandoned:
        # Their steps still run in Prefect's task-runner threads, which the interpreter would
        # wait for at exit; the runs are already marked Crashed, so send what is queued and
        # leave now.
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        with contextlib.suppress(Exception):
            APILogWorker.drain_all(timeout=5)
            EventsWorker.drain_all(timeout=5)
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
