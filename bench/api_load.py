"""API under load: an open-loop async httpx driver at a fixed request rate, engine vs Prefect.

Half the requests start a job, half read one started just before: POST /workflows/start and
GET /jobs/{id} on the engine's API (no worker unless --with-worker), POST
/api/deployments/{id}/create_flow_run and GET /api/flow_runs/{id} on the same Prefect server.
Requests go on schedule whether or not earlier ones answered; errors are non-2xx answers,
transport errors and requests skipped (more than --max-inflight waiting). Targets at 100 req/s:
engine POST p99 <= 50 ms, GET p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import report as out
from bench.stacks import Benchmark, engine_running, raw_deployment, workflow_id
from cli.stack import LocalStack

METHOD = {"api_server": "uvicorn, one process (supaflow api)"}


@dataclass(frozen=True)
class Side:
    """One side: base URL, headers, a start's path and body, a read's path, the id's key."""

    base_url: str
    headers: dict[str, str]
    post: tuple[str, dict[str, Any]]
    get: str
    id_key: str


async def drive(side: Side, args: argparse.Namespace, ids: list[str]) -> dict[str, Any]:
    """`--rate` requests/s for `--duration` s, `--post-share` of them starts (spread evenly),
    the others reads of one of the 50 newest ids (`ids` grows)."""
    tally: dict[str, Any] = {
        k: {"ms": [], "statuses": Counter(), "errors": 0} for k in ("post", "get")
    }
    rng, inflight, skipped, lag = random.Random(7), [0], 0, 0.0
    limits = httpx.Limits(max_connections=args.max_inflight, max_keepalive_connections=100)
    async with httpx.AsyncClient(
        base_url=side.base_url, headers=side.headers, timeout=10, limits=limits
    ) as client:

        async def one(kind: str) -> None:
            counts, (path, body) = tally[kind], side.post if kind == "post" else (side.get, None)
            started = time.perf_counter()
            try:
                target = path.format(id=rng.choice(ids[-50:]))
                answer = await (client.post(path, json=body) if body else client.get(target))
            except httpx.HTTPError as exc:
                counts["errors"] += 1
                counts["statuses"][type(exc).__name__] += 1
                return
            finally:
                inflight[0] -= 1
            counts["ms"].append((time.perf_counter() - started) * 1000)
            counts["statuses"][str(answer.status_code)] += 1
            counts["errors"] += answer.status_code >= 400
            if kind == "post" and answer.status_code < 400:
                ids.append(str(answer.json()[side.id_key]))

        loop, tasks, total = asyncio.get_running_loop(), [], int(args.rate * args.duration)
        t0 = loop.time()
        for i in range(total):
            due = t0 + i / args.rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            lag = max(lag, loop.time() - due)
            if inflight[0] >= args.max_inflight:
                skipped += 1
                continue
            inflight[0] += 1
            post = int((i + 1) * args.post_share) > int(i * args.post_share)
            tasks.append(asyncio.create_task(one("post" if post else "get")))
        sent_in = loop.time() - t0
        await asyncio.gather(*tasks)
    errors = tally["post"]["errors"] + tally["get"]["errors"] + skipped
    result: dict[str, Any] = {
        k: {"latency_ms": out.summarize(t["ms"]), "errors": t["errors"], "statuses": t["statuses"]}
        for k, t in tally.items()
    }
    rate = round((total - skipped) / sent_in, 1) if sent_in else None
    result.update(requests=total, skipped_by_driver=skipped, errors_total=errors)
    return result | {"achieved_rate_per_s": rate, "driver_max_lag_ms": round(lag * 1000, 1)}


def measured(stack: LocalStack, side: Side, args: Any) -> tuple[dict[str, Any], list[str]]:
    """Ten starts to read, a pause, the load and its CPU; (result, the ids the load made)."""
    url, body = side.base_url + side.post[0], side.post[1]
    seed = [httpx.post(url, headers=side.headers, json=body, timeout=30) for _ in range(10)]
    ids = [str(answer.json()[side.id_key]) for answer in seed]
    time.sleep(2)
    result, cpu = out.with_cpu(stack, lambda: asyncio.run(drive(side, args, ids)))
    return {**result, "cpu_seconds": cpu}, ids[10:]


def engine_side(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    """The engine's API under the load, then how long until every job it created had its
    flow run; with --with-worker, until every one finished, the jobs counted by status."""
    api_env = {"PREFECT_API_URL": "http://127.0.0.1:9/api"} if args.api_only else None
    with engine_running(stack, limit=10 if args.with_worker else None, api_env=api_env) as token:
        start = ("/workflows/start", {"workflow_id": workflow_id(3), "input_data": {"x": 1}})
        headers = {"Authorization": f"Bearer {token}"}
        side = Side(stack.api_url, headers, start, "/jobs/{id}", "job_id")
        (result, created), started = measured(stack, side, args), time.monotonic()

        def dispatched() -> int:
            return int(out.query(stack.database_url, "jobs_with_flow_run", [created])[0]["n"])

        n = 0 if args.api_only else out.poll(dispatched, lambda n: n >= len(created), 120, 0.5)
        result.update(jobs_created=len(created), jobs_with_flow_run=n)
        result["flow_runs_all_created_after_s"] = round(time.monotonic() - started, 1)
        if args.with_worker:
            out.wait_final(stack, created, timeout=args.finish_timeout, every=1)
            result["jobs_by_status"] = out.outcomes(stack, created)["counts"]
        return result


def raw_side(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    """Prefect's own create and read endpoints; no worker, so the runs stay scheduled."""
    with raw_deployment(stack, "process", None) as deployment:
        body = {"parameters": {"x": {"x": 1}, "steps": 3}}
        start = (f"deployments/{deployment}/create_flow_run", body)
        side = Side(stack.prefect_api_url + "/", {}, start, "flow_runs/{id}", "id")
        return measured(stack, side, args)[0]


OPTIONS = [
    ("--rate", 100.0, "requests per second", "rate_per_s"),
    ("--duration", 60.0, "seconds per side", "duration_s"),
    ("--max-inflight", 500, "most requests waiting at once (more are skipped)", "max_inflight"),
    ("--post-share", 0.5, "share of requests that start a job"),
    ("--api-only", False, "diagnostic: the API cannot reach Prefect (a closed port)"),
    ("--with-worker", False, "also run the engine's warm worker", "engine_worker_running"),
    ("--finish-timeout", 900.0, "with --with-worker: most seconds to wait", "finish_timeout_s"),
]


def show(args: Any, results: dict[str, Any]) -> Any:
    """The latency table and each side's rates (the raw side as `raw_prefect`)."""
    if "raw" in results:
        results["raw_prefect"] = results.pop("raw")
    rows = [
        (name, kind.upper(), *out.cells(r[kind]["latency_ms"]), r[kind]["errors"])
        for name, r in results.items()
        for kind in ("post", "get")
    ]
    cut = " (API cannot reach Prefect)" if args.api_only else ""
    title = f"API under load: {args.rate:g} req/s for {args.duration:g} s, "
    title += f"{args.post_share:.0%} POST{cut} (ms)"
    out.print_table(title, ["side", "request", "n", "p50", "p95", "p99", "max", "errors"], rows)
    for name, r in results.items():
        done = f"{name}: achieved {r['achieved_rate_per_s']} req/s"
        done += f", skipped {r['skipped_by_driver']}, driver lag max {r['driver_max_lag_ms']} ms"
        print(f"{done}, errors {r['errors_total']}")
    engine = results.get("engine", {})
    p99 = {k: engine.get(k, {}).get("latency_ms", {}).get("p99") for k in ("post", "get")}
    targets = [
        out.check("engine POST p99", p99["post"], "<=", 50.0, "ms"),
        out.check("engine GET p99", p99["get"], "<=", 20.0, "ms"),
        out.check("engine errors", engine.get("errors_total"), "<=", 0, "requests"),
    ]
    mix = f"{args.post_share:.0%} POST (start), the rest GET (one of the 50 newest), spread evenly"
    settings = {"mix": mix, "api_reaches_prefect": not args.api_only}
    return targets, {"settings": settings}, bool(results)


SETUPS = {"engine": engine_side, "raw": raw_side}
main = Benchmark("api_load", __doc__, OPTIONS, SETUPS, show, METHOD)

if __name__ == "__main__":
    sys.exit(main())
