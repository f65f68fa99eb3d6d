"""Serving a warm worker: until a signal or a stop event, and as the `python -m worker` command.

`run_command` is what both `python -m worker` (`main`, argparse) and `supaflow worker`
(cli/main.py) call, with the options of worker/command_options.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

import anyio
from prefect.settings import PREFECT_WORKER_QUERY_SECONDS, temporary_settings

from worker.command_options import (
    DEFAULT_DRAIN_SECONDS,
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_LIMIT,
    DEFAULT_POOL,
    DESCRIPTION,
    HELP,
)
from worker.deployments import ensure_warm_deployment
from worker.schedule_deployment import ensure_schedule_deployment
from worker.worker import WarmWorker

logger = logging.getLogger("supaflow.warm_worker")


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
    limit: int = DEFAULT_LIMIT,
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


def run_command(
    *,
    pool: str = DEFAULT_POOL,
    limit: int = DEFAULT_LIMIT,
    name: str | None = None,
    query_seconds: float | None = None,
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    drain_seconds: float = DEFAULT_DRAIN_SECONDS,
    no_listen: bool = False,
    deploy: bool = False,
    deploy_only: bool = False,
) -> None:
    """`python -m worker` / `supaflow worker`: deploy when asked, then serve until stopped.

    With `deploy_only` it prints the deployment's full name and returns.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if deploy or deploy_only:
        print(ensure_warm_deployment(pool), flush=True)
        if deploy_only:
            return
    _ensure_schedules_deployed(pool)
    abandoned = serve_warm_worker(
        pool,
        limit,
        query_seconds=query_seconds,
        name=name,
        listen=not no_listen,
        heartbeat_seconds=heartbeat_seconds,
        drain_seconds=drain_seconds,
    )
    if abandoned:
        _exit_now()


def _ensure_schedules_deployed(pool: str) -> None:
    """The fire-schedule deployment on this worker's pool, so the schedules' Prefect runs have
    a worker (best effort: without Prefect the worker's own start fails and says why)."""
    try:
        ensure_schedule_deployment(pool)
    except Exception as exc:
        logger.warning("could not create the fire-schedule deployment: %s", exc)


def _exit_now() -> None:
    """Leave the process at once, after sending the logs and events still queued.

    The abandoned runs' steps still run in Prefect's task-runner threads, which the
    interpreter would wait for at exit; the runs are already marked Crashed.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(Exception):
        APILogWorker.drain_all(timeout=5)
        EventsWorker.drain_all(timeout=5)
    logging.shutdown()
    os._exit(0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m worker` (its options are `run_command`'s)."""
    parser = argparse.ArgumentParser(prog="python -m worker", description=DESCRIPTION)
    parser.add_argument("--pool", default=DEFAULT_POOL, help=HELP["pool"])
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=HELP["limit"])
    parser.add_argument("--name", default=None, help=HELP["name"])
    parser.add_argument("--query-seconds", type=float, default=None, help=HELP["query_seconds"])
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=DEFAULT_HEARTBEAT_SECONDS,
        help=HELP["heartbeat_seconds"],
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=DEFAULT_DRAIN_SECONDS, help=HELP["drain_seconds"]
    )
    for flag in ("no_listen", "deploy", "deploy_only"):
        parser.add_argument(f"--{flag.replace('_', '-')}", action="store_true", help=HELP[flag])
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m worker --pool supaflow-warm --limit 10`."""
    run_command(**vars(build_parser().parse_args(argv)))
