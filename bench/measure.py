"""Measuring on a stack: starting runs the engine's way and raw Prefect's way, seeing them
finish (read straight from each side's database), and the CPU each component spends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from uuid import UUID

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]

from bench.stacks import connect
from cli.stack import LocalStack

T = TypeVar("T")
FINAL_JOB = ["completed", "failed"]
FINAL_RUN = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
_FINAL_SQL = {
    "jobs": "select id::text as id from public.jobs where id = any(%s::uuid[])"
    " and status = any(%s)",
    "runs": "select id::text as id from flow_run where id = any(%s::uuid[])"
    " and state_type::text = any(%s)",
}
_OUTCOME_SQL = {
    "jobs": "select status as state, count(*) as n, extract(epoch from max(completed_at)) as last"
    " from public.jobs where id = any(%s::uuid[]) group by 1",
    "runs": "select state_type::text as state, count(*) as n,"
    " extract(epoch from max(end_time)) as last from flow_run where id = any(%s::uuid[])"
    " group by 1",
}


def _side(stack: LocalStack, runs: bool) -> tuple[str, str]:
    return ("runs", stack.prefect_database_url) if runs else ("jobs", stack.database_url)


def wait_final(
    stack: LocalStack, ids: Sequence[str], *, timeout: float, runs: bool = False, poll: float = 0.02
) -> dict[str, float]:
    """Poll the job rows (with `runs`: Prefect's flow_run rows) until each is final; the
    monotonic time each was seen so. One indexed query per poll, cheap for both sides."""
    kind, url = _side(stack, runs)
    final = FINAL_RUN if runs else FINAL_JOB
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    with connect(url) as conn:
        while len(done) < len(ids) and time.monotonic() < deadline:
            pending = [i for i in ids if i not in done]
            rows = conn.execute(_FINAL_SQL[kind], [pending, final]).fetchall()
            now = time.monotonic()
            done.update((row["id"], now) for row in rows)
            if len(done) < len(ids):
                time.sleep(poll)
    return done


def outcomes(stack: LocalStack, ids: Sequence[str], *, runs: bool = False) -> dict[str, Any]:
    """Counts by status (state type with `runs`) of these jobs (flow runs) and the last
    completion (epoch seconds)."""
    kind, url = _side(stack, runs)
    with connect(url) as conn:
        rows = conn.execute(_OUTCOME_SQL[kind], [list(ids)]).fetchall()
    last = max((float(r["last"]) for r in rows if r["last"] is not None), default=None)
    return {"counts": {str(r["state"]): int(r["n"]) for r in rows}, "last_done": last}


class EngineClient:
    """POST /workflows/start with one user's token (sync, keep-alive)."""

    def __init__(self, api_url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def start(self, workflow: str, input_data: Any) -> str:
        """Start a job; its id."""
        response = self.http.post(
            "/workflows/start", json={"workflow_id": workflow, "input_data": input_data}
        )
        response.raise_for_status()
        return str(response.json()["job_id"])

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


def run_raw(deployment_id: UUID, parameters: Mapping[str, Any]) -> str:
    """Raw Prefect: `run_deployment(timeout=0)`; the flow run id."""
    from prefect.deployments import run_deployment

    run: Any = run_deployment(
        deployment_id, parameters=dict(parameters), timeout=0, as_subflow=False
    )
    return str(run.id)


async def limited(
    count: int, concurrency: int, one: Callable[[int], Awaitable[T]]
) -> list[T | None]:
    """`one(0..count-1)`, `concurrency` at a time; None where one raised (counted, printed)."""
    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def guarded(i: int) -> T | None:
        async with gate:
            try:
                return await one(i)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return None

    ids = await asyncio.gather(*(guarded(i) for i in range(count)))
    if errors:
        print(f"  {len(errors)} submissions failed, first: {errors[0]}", flush=True)
    return list(ids)


def raw_burst(
    deployment: UUID,
    count: int,
    concurrency: int,
    parameters: Callable[[int], dict[str, Any]],
    key: Callable[[int], str | None] = lambda _i: None,
) -> list[str | None]:
    """`count` raw `run_deployment(timeout=0)` calls, `concurrency` at once, with
    `parameters(i)` and idempotency key `key(i)`; the flow run ids (None: failed)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    async def run() -> list[str | None]:
        async with get_client() as client:

            async def one(i: int) -> str:
                flow_run = await run_deployment(  # type: ignore[misc]
                    deployment,
                    client=client,
                    parameters=parameters(i),
                    timeout=0,
                    as_subflow=False,
                    idempotency_key=key(i),
                )
                return str(flow_run.id)

            return await limited(count, concurrency, one)

    return asyncio.run(run())


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL server process on the machine (shared server: other
    databases' work counts too)."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info.get("name") in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                total += sum(proc.cpu_times()[:2])
    return total


def cpu_snapshot(stack: LocalStack) -> dict[str, float]:
    """CPU seconds so far of each running service, of PostgreSQL and of this process."""
    snap = {s.name: s.cpu_seconds() for s in stack.services.values() if s.alive()}
    snap["postgresql (all databases)"] = _postgres_cpu()
    snap["bench client"] = float(sum(psutil.Process().cpu_times()[:2]))
    snap["machine (all processes)"] = float(sum(psutil.cpu_times()[:3]))
    return snap


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent between two snapshots, per component."""
    spent = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}
    machine = spent.get("machine (all processes)", 0.0)
    ours = sum(v for k, v in spent.items() if k != "machine (all processes)")
    # Whatever else ran on the machine meanwhile (other users' work competes for the CPUs).
    spent["other processes"] = round(max(machine - ours, 0.0), 2)
    return spent
