"""Every private Prefect API the project uses, in one place.

Prefect offers no public way to run a flow run inside a worker's own process, so the warm
worker leans on a few private parts of Prefect 3.9, and the API's run starter switches off the
client's connect retries. They are all here, behind public names; no other module of the
project imports `prefect._...` or touches a private Prefect member. The module sits in engine,
the lowest layer, because both the worker and the API (through engine.dispatch) use it.
tests/unit/test_prefect_private.py checks each one and names it when a Prefect upgrade
removes or renames it: that test failing means this module needs updating.

- `prefect._flow_run_suspension.mark_flow_run_suspension_requested`: the per-flow-run stop
  request the flow engine checks at every boundary; it stops a run executing in this process
  before its next step (`request_engine_stop`).
- `prefect._internal.observers.FlowRunCancellingObserver`: the cancellation observer
  BaseWorker uses (websocket, polling as fallback); the warm worker keeps a second one, with
  its own poll interval, for the runs it executes (`new_cancelling_observer`).
- Private members of `prefect.workers.base.BaseWorker`: `BaseWorkerAccess` overrides three
  private methods BaseWorker calls itself (each delegates to a public hook a subclass may
  override), and gives public names to the other private methods and attributes used.
- The HTTP client inside `prefect.client.orchestration.SyncPrefectClient` (`_client`), whose
  transport's connection pool Prefect sets to retry refused connections
  (`without_connect_retries`).
- `prefect._vendor.croniter.croniter.croniter`: the cron iterator Prefect's CronSchedule uses
  (Prefect vendors it; no croniter is installed otherwise); schedules ask it for a cron
  rule's previous wall time (`cron_iterator`, engine.schedule_rules).
"""

from __future__ import annotations

import abc
import logging
from contextlib import AsyncExitStack
from typing import Any, TypeVar
from uuid import UUID

import anyio.abc
import httpcore
import httpx
from prefect._flow_run_suspension import mark_flow_run_suspension_requested
from prefect._internal.observers import FlowRunCancellingObserver, OnCancellingCallback
from prefect._vendor.croniter.croniter import croniter
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun, State
from prefect.events import Event
from prefect.logging.loggers import LoggingAdapter
from prefect.workers.base import (
    BaseJobConfiguration,
    BaseVariables,
    BaseWorker,
    BaseWorkerResult,
)

#: Private modules of Prefect, with the names taken from each.
PRIVATE_MODULE_NAMES: dict[str, tuple[str, ...]] = {
    "prefect._flow_run_suspension": ("mark_flow_run_suspension_requested",),
    "prefect._internal.observers": ("FlowRunCancellingObserver", "OnCancellingCallback"),
    "prefect._vendor.croniter.croniter": ("croniter",),
}

#: Prefect's vendored croniter, under a public name (engine.schedule_rules).
cron_iterator = croniter

#: Parameters passed by name to the callables taken from private modules.
PRIVATE_CALLABLE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "mark_flow_run_suspension_requested": ("flow_run_id", "state"),
    "FlowRunCancellingObserver": ("on_cancelling", "polling_interval"),
}

#: Methods of the (private) FlowRunCancellingObserver class the worker calls.
OBSERVER_METHODS = (
    "add_in_flight_flow_run_id",
    "remove_in_flight_flow_run_id",
    "__aenter__",
    "__aexit__",
)

#: Private BaseWorker methods overridden here, each with the BaseWorker method that calls it
#: (an override only matters while BaseWorker still calls it from there).
OVERRIDDEN_BASEWORKER_METHODS: dict[str, str] = {
    "_submit_run": "_submit_scheduled_flow_runs",
    "_submit_scheduled_flow_runs": "get_and_submit_flow_runs",
    "_cancel_run": "_setup_cancellation_observer",
}

#: Private BaseWorker methods called here, with the parameters passed to them.
CALLED_BASEWORKER_METHODS: dict[str, tuple[str, ...]] = {
    "_release_limit_slot": ("flow_run_id",),
    "_propose_pending_state": ("flow_run",),
    "_propose_crashed_state": ("flow_run", "message"),
    "_mark_flow_run_as_cancelled": ("flow_run", "state_updates"),
    "_give_worker_labels_to_flow_run": ("flow_run_id",),
    "_emit_flow_run_submitted_event": ("configuration",),
    "_emit_flow_run_executed_event": ("result", "configuration", "submitted_event"),
}

#: Private BaseWorker attributes (set in its __init__) read or mutated here.
READ_BASEWORKER_ATTRIBUTES = (
    "_exit_stack",
    "_runs_task_group",
    "_submitting_flow_run_ids",
    "_cancelling_observer",
    "_work_pool_name",
    "_logger",
    "_has_successfully_synced",
)

#: Private attributes of the Prefect client (and its httpx/httpcore parts) set here.
CLIENT_PRIVATE_ATTRIBUTES = ("_client", "_transport_for_url", "_pool", "_retries")

CancellingObserver = FlowRunCancellingObserver


def without_connect_retries(client: SyncPrefectClient) -> None:
    """Make `client` give up on the first refused connection instead of retrying it.

    Prefect sets its HTTP transport to retry failed connections 3 times with backoff
    (about 1.5 s in all, whatever PREFECT_CLIENT_MAX_RETRIES says). In a request path that
    only delays the answer: a job that could not be handed over stays `pending` and the
    maintenance flow dispatches it. Done the way Prefect sets its default, after the client
    exists, so proxy, TLS and pool settings stay Prefect's: handing the client a transport of
    our own (`httpx_settings={"transport": ...}`) would also fail fast, but httpx then ignores
    the environment's proxies and Prefect's TLS context and connection limits. A layout it does
    not recognise is left alone (tests/unit/test_dispatch.py then fails).
    """
    http = getattr(client, "_client", None)
    transport_for_url = getattr(http, "_transport_for_url", None)
    if not callable(transport_for_url):
        return
    transport = transport_for_url(httpx.URL(str(client.api_url)))
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore.ConnectionPool):
        pool._retries = 0


def request_engine_stop(flow_run_id: UUID, state: State[Any]) -> bool:
    """Ask the flow engine executing `flow_run_id` in this process to stop at its next boundary.

    The engine raises `Pause` carrying `state` there. False while no engine of this process
    has registered the run yet (it registers when it starts).
    """
    return mark_flow_run_suspension_requested(flow_run_id, state)


def new_cancelling_observer(
    on_cancelling: OnCancellingCallback, polling_interval: float
) -> CancellingObserver:
    """An observer calling `on_cancelling(flow_run_id)` for flow runs entering Cancelling.

    Enter it as an async context manager; it only reports runs added with
    `add_in_flight_flow_run_id`.
    """
    return FlowRunCancellingObserver(on_cancelling=on_cancelling, polling_interval=polling_interval)


C = TypeVar("C", bound=BaseJobConfiguration)
V = TypeVar("V", bound=BaseVariables)
R = TypeVar("R", bound=BaseWorkerResult)


# abc.ABC among the bases keeps this class out of Prefect's worker type registry (it has no
# `type`); the concrete subclass registers as usual.
class BaseWorkerAccess(BaseWorker[C, V, R], abc.ABC):
    """BaseWorker with public names for the private members the warm worker uses.

    The three overridden private methods delegate to `submit_run`,
    `submit_scheduled_flow_runs` and `cancel_run`, which do what BaseWorker does unless a
    subclass overrides them (calling `super()` reaches BaseWorker's behaviour).
    """

    # -- overridden private methods: BaseWorker calls these itself -----------------------------

    async def _submit_run(self, flow_run: FlowRun) -> None:
        await self.submit_run(flow_run)

    async def _submit_scheduled_flow_runs(self, flow_run_response: list[Any]) -> list[FlowRun]:
        return await self.submit_scheduled_flow_runs(flow_run_response)

    async def _cancel_run(self, flow_run_id: UUID) -> None:
        await self.cancel_run(flow_run_id)

    async def submit_run(self, flow_run: FlowRun) -> None:
        """Claim `flow_run` (the Pending proposal) and start it; BaseWorker's way here."""
        await BaseWorker._submit_run(self, flow_run)

    async def submit_scheduled_flow_runs(self, flow_run_response: list[Any]) -> list[FlowRun]:
        """Take a limit slot for each polled run that fits and submit it; the submitted ones."""
        return await BaseWorker._submit_scheduled_flow_runs(self, flow_run_response)

    async def cancel_run(self, flow_run_id: UUID) -> None:
        """Cancel a flow run of the pool that entered Cancelling; BaseWorker's way here."""
        await BaseWorker._cancel_run(self, flow_run_id)

    # -- private attributes --------------------------------------------------------------------

    @property
    def exit_stack(self) -> AsyncExitStack:
        """The stack BaseWorker closes in teardown (after this worker's own teardown)."""
        return self._exit_stack

    @property
    def runs_task_group(self) -> anyio.abc.TaskGroup | None:
        """The task group flow runs are submitted in (None outside setup..teardown)."""
        return self._runs_task_group

    @property
    def submitting_flow_run_ids(self) -> set[UUID]:
        """Ids of runs being submitted (BaseWorker skips them when a poll returns them again)."""
        return self._submitting_flow_run_ids

    @property
    def cancelling_observer(self) -> CancellingObserver | None:
        """BaseWorker's own cancellation observer (None until synced, or when disabled)."""
        return self._cancelling_observer

    @property
    def work_pool_name(self) -> str:
        """The name of the work pool this worker polls."""
        return self._work_pool_name

    @property
    def logger(self) -> logging.Logger | LoggingAdapter:
        """The worker's logger (BaseWorker replaces it once it knows its id)."""
        return self._logger

    @property
    def has_synced(self) -> bool:
        """Whether the worker has synced with the API since setup (polls are skipped before)."""
        return self._has_successfully_synced

    # -- private methods -----------------------------------------------------------------------

    def release_limit_slot(self, flow_run_id: UUID) -> None:
        """Give back the limit slot taken for `flow_run_id` (no-op when none is held)."""
        self._release_limit_slot(flow_run_id)

    async def propose_pending_state(self, flow_run: FlowRun) -> bool:
        """Propose Pending for `flow_run`: the claim, which succeeds for one worker only."""
        return await self._propose_pending_state(flow_run)

    async def propose_crashed_state(self, flow_run: FlowRun, message: str) -> None:
        """Propose Crashed for `flow_run` with `message`."""
        await self._propose_crashed_state(flow_run, message)

    async def mark_flow_run_as_cancelled(
        self, flow_run: FlowRun, state_updates: dict[str, Any] | None = None
    ) -> None:
        """Set `flow_run` Cancelled (with `state_updates` on the state)."""
        await self._mark_flow_run_as_cancelled(flow_run, state_updates=state_updates)

    async def give_worker_labels_to_flow_run(self, flow_run_id: UUID) -> None:
        """Label `flow_run_id` with this worker's identifying labels."""
        await self._give_worker_labels_to_flow_run(flow_run_id)

    def emit_flow_run_submitted_event(self, configuration: BaseJobConfiguration) -> Event | None:
        """Emit `prefect.worker.submitted-flow-run` for the run `configuration` was made for."""
        return self._emit_flow_run_submitted_event(configuration)

    def emit_flow_run_executed_event(
        self,
        result: BaseWorkerResult,
        configuration: BaseJobConfiguration,
        submitted_event: Event | None = None,
    ) -> None:
        """Emit `prefect.worker.executed-flow-run`, following `submitted_event`."""
        self._emit_flow_run_executed_event(result, configuration, submitted_event)
