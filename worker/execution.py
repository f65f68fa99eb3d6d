"""Executing one flow run in a thread of the worker's process, through Prefect's flow engine.

`start_in_thread` hands the run to `prefect.flow_engine.run_flow` in a thread of its own, so
an exception escaping one run ends that thread only; the run's task runs, logs, retries and
states reach the API as with any engine. `InProcessRun` records how the thread ended, for
the worker to conclude the run (cancellation hooks, crash reporting) afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from prefect import Flow
from prefect.client.schemas.objects import FlowRun
from prefect.context import SettingsContext
from prefect.exceptions import Abort, Pause
from prefect.flow_engine import run_flow
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, Settings

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


def run_settings(base: SettingsContext) -> Settings:
    """The settings in-process runs execute with: `base` without the engine's heartbeat.

    The flow engine's own heartbeat thread costs ~1 s at the end of every in-process run (it
    sleeps in 1 s steps and is joined); the worker emits those heartbeats (worker/heartbeat.py).
    """
    return base.settings.copy_with_update(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def execute_flow(run: InProcessRun, settings: SettingsContext) -> None:
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
        # Crashed when it could, and the worker checks that when it concludes the run.
        run.outcome = "crashed"
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        run.done.set()


def start_in_thread(run: InProcessRun, settings: SettingsContext) -> asyncio.Future[None]:
    """Start `run` in a daemon thread; the future resolves (on this loop) when it has ended.

    `settings` is entered in the thread, so it must be this run's own (a settings context can
    be entered once); the thread runs in a copy of the caller's context.
    """
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    context = contextvars.copy_context()

    def target() -> None:
        context.run(execute_flow, run, settings)
        # RuntimeError: the loop is gone, the worker is shutting down.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, finished)

    threading.Thread(target=target, name=f"flow-run-{run.flow_run.id}", daemon=True).start()
    return finished


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
