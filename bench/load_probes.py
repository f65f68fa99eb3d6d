"""What bench/load_concurrent.py runs alongside its burst: reads sampled at a fixed rate, the
maintenance flow on a loop, the burst of starts itself, and the raw Prefect baseline."""

from __future__ import annotations

import asyncio
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx

from bench.measure import limited, outcomes, raw_burst
from bench.report import summarize
from bench.stacks import connect, deploy_raw, start_raw_worker
from cli.stack import LocalStack


class Sampler:
    """GET /jobs/{id} and GET /jobs?limit=20 at a fixed rate in a thread, until stopped."""

    def __init__(self, api_url: str, token: str, job_ids: list[str], rate: float) -> None:
        self.client = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        self.job_ids = job_ids
        self.rate = rate
        self.latencies: dict[str, list[float]] = {"get": [], "list": []}
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        rng = random.Random(3)
        i = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            kind = "get" if i % 2 == 0 else "list"
            path = f"/jobs/{rng.choice(self.job_ids)}" if kind == "get" else "/jobs?limit=20"
            started = time.perf_counter()
            try:
                response = self.client.get(path)
                if response.status_code != 200:
                    self.errors[f"{kind} {response.status_code}"] += 1
                else:
                    self.latencies[kind].append((time.perf_counter() - started) * 1000)
            except httpx.HTTPError as exc:
                self.errors[f"{kind} {type(exc).__name__}"] += 1
            i += 1
            next_at += 1 / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> Sampler:
        """Start sampling."""
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop; the summary."""
        self._stop.set()
        self._thread.join(30)
        self.client.close()
        return {
            "get_job_ms": summarize(self.latencies["get"]),
            "list_jobs_ms": summarize(self.latencies["list"]),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
        }


class MaintenanceLoop:
    """The real maintenance flow, run in-process every `every` seconds, until stopped."""

    def __init__(self, every: float, grace: float) -> None:
        self.every = every
        self.grace = grace
        self.passes: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def run_once(self) -> dict[str, Any]:
        """One pass; its duration and decisions."""
        from flows.maintenance import maintenance

        started = time.perf_counter()
        try:
            result = maintenance(grace_seconds=self.grace)
            error = None
        except Exception as exc:
            result, error = {}, f"{type(exc).__name__}: {exc}"
        recovery = result.get("recovery", {})
        return {
            "seconds": round(time.perf_counter() - started, 3),
            "dispatched": list(result.get("dispatched", [])),
            "resubmitted": dict(recovery.get("resubmitted", {})),
            "failed": dict(recovery.get("failed", {})),
            "recovery_errors": dict(recovery.get("errors", {})),
            "error": error,
        }

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.passes.append(self.run_once())
            self._stop.wait(self.every)

    def start(self) -> MaintenanceLoop:
        """Start the loop."""
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        """Stop after the current pass; every pass."""
        self._stop.set()
        self._thread.join(300)
        return self.passes


def calls(keys: Sequence[str], replays: set[str]) -> list[tuple[int, str]]:
    """(index, key) of every start: one per key, a second one at once for a replayed key."""
    return [(i, k) for i, k in enumerate(keys) for _ in range(2 if k in replays else 1)]


def post_all(
    api_url: str, workflow: str, tokens: list[str], starts: list[tuple[int, str]], clients: int
) -> list[dict[str, Any]]:
    """POST every start with its Idempotency-Key, `clients` in flight; the answers."""

    async def run() -> list[dict[str, Any] | None]:
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as client:

            async def one(n: int) -> dict[str, Any]:
                index, key = starts[n]
                token = tokens[index % len(tokens)]
                headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
                body = {"workflow_id": workflow, "input_data": {"i": index}}
                try:
                    response = await client.post("/workflows/start", headers=headers, json=body)
                except httpx.HTTPError as exc:
                    return {"key": key, "status": type(exc).__name__}
                job_id = response.json().get("job_id")
                return {"key": key, "status": response.status_code, "job_id": job_id}

            return await limited(len(starts), clients, one)

    return [a for a in asyncio.run(run()) if a is not None]


def raw_baseline(
    stack: LocalStack, starts: list[tuple[int, str]], clients: int, timeout: float
) -> dict[str, Any]:
    """The same keys through raw Prefect on a warm worker: flow runs created and finished."""
    deployment, pool = deploy_raw(stack, "supaflow-warm")
    worker = start_raw_worker(stack, "supaflow-warm", pool, 10)
    prefix = f"raw-{secrets.token_hex(3)}-"
    started = time.monotonic()
    ids = raw_burst(
        deployment,
        len(starts),
        clients,
        lambda n: {"x": {"i": starts[n][0]}, "steps": 3},
        lambda n: prefix + starts[n][1],
    )
    distinct = sorted({i for i in ids if i is not None})
    state: dict[str, Any] = {"counts": {}}
    while time.monotonic() - started < timeout:
        state = outcomes(stack, distinct, runs=True)
        final = sum(state["counts"].get(k, 0) for k in ("COMPLETED", "FAILED", "CRASHED"))
        if final >= len(distinct):
            break
        time.sleep(0.5)
    with connect(stack.prefect_database_url) as conn:
        row = conn.execute(
            "select count(*) as n, count(distinct idempotency_key) as keys from flow_run"
            " where deployment_id = %s",
            [deployment],
        ).fetchone()
    stack.stop(worker)
    completed = state["counts"].get("COMPLETED", 0)
    return {
        "requests": len(ids),
        "request_errors": sum(1 for i in ids if i is None),
        "distinct_flow_runs": len(distinct),
        "flow_run_rows": int(row["n"]) if row else None,
        "distinct_keys": int(row["keys"]) if row else None,
        "completed": completed,
        "not_completed": len(distinct) - completed,
        "seconds": round(time.monotonic() - started, 1),
    }
