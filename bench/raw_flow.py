"""The raw Prefect baseline of the benchmarks: a flow of no-op tasks, nothing of the engine,
deployed on Prefect's process worker or on the warm worker. Only Prefect is imported, so a
flow-run process pays for Prefect's imports and nothing else."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE


@task(cache_policy=NO_CACHE, persist_result=False)
def noop(value: Any) -> Any:
    """Return the input unchanged."""
    return value


@flow(name="bench-raw-noop", persist_result=False)
def raw_noop_flow(x: Any = None, steps: int = 3) -> Any:
    """`steps` no-op tasks in sequence, each submitted and awaited; returns the input."""
    value = x
    for _ in range(steps):
        value = noop.submit(value).result()
    return value


@flow(name="bench-raw-noop-direct", persist_result=False)
def raw_noop_flow_direct(x: Any = None, steps: int = 3) -> Any:
    """The same with each task called directly (no task runner): Prefect's cheapest task."""
    value = x
    for _ in range(steps):
        value = noop(value)
    return value
