"""API under load: an open-loop async httpx driver at a fixed request rate, engine vs Prefect.

    .venv/bin/python bench/api_load.py                        # 100 req/s for 60 s each
    .venv/bin/python bench/api_load.py --rate 20 --duration 5 # the CI size

Half the requests start a job, half read one of the jobs started just before:
- engine: POST /workflows/start and GET /jobs/{id} on the real API (uvicorn, local-auth
  token, rate limits raised out of the way). Each POST also makes the API create the job's
  Prefect flow run in the background, as it always does; no worker runs unless --with-worker;
- raw Prefect (baseline): POST /api/deployments/{id}/create_flow_run and
  GET /api/flow_runs/{id} on the same Prefect server (PostgreSQL), at the same rate.

Requests are sent on schedule whether or not earlier ones answered (open loop: a slow server
does not slow the driver down). Latency is from send to full response; errors are non-2xx
answers, transport errors and requests the driver had to skip (more than --max-inflight
waiting). Targets: engine POST p99 <= 50 ms, GET p99 <= 20 ms at 100 req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.measure import cpu_delta, cpu_snapshot
from bench.report import check, finish, parse, print_table, split, summarize
from bench.stacks import connect, deploy_raw, run_setups, start_engine, workflow_id
from cli.stack import LocalStack


@dataclass
class Tally:
    """Latencies (ms) and outcomes of one kind of request."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Summary: percentiles, error count, answers by status."""
        return {
            "latency_ms": summarize(self.latencies_ms),
            "errors": self.errors,
            "statuses": dict(self.statuses),
        }


@dataclass(frozen=True)
class Side:
    """One side's requests: where to send them, what a start and a read are, and the id in a
    start's answer."""

    base_url: str
    headers: dict[str, str]
    post: tuple[str, dict[str, Any]]  # path and JSON body of a start
    get: str  # path of a read, with {id}
    id_key: str


async def drive(side: Side, args: argparse.Namespace, seed_ids: list[str]) -> dict[str, Any]:
    """Send `--rate` requests per second for `--duration` seconds, `--post-share` of them
    starts (spread evenly), the others reads of one of the 50 newest ids."""
    tallies = {"post": Tally(), "get": Tally()}
    ids = list(seed_ids)
    inflight = skipped = 0
    max_lag = 0.0
    rng = random.Random(7)
    limits = httpx.Limits(max_connections=args.max_inflight, max_keepalive_connections=100)
    async with httpx.AsyncClient(
        base_url=side.base_url, headers=side.headers, timeout=10, limits=limits
    ) as client:

        async def one(kind: str) -> None:
            nonlocal inflight
            tally = tallies[kind]
            path, body = side.post if kind == "post" else (side.get, None)
            started = time.perf_counter()
            try:
                target = path.format(id=rng.choice(ids[-50:]))
                response = await (client.post(path, json=body) if body else client.get(target))
            except httpx.HTTPError as exc:
                tally.errors += 1
                tally.statuses[type(exc).__name__] += 1
                return
            finally:
                inflight -= 1
            tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            tally.statuses[str(response.status_code)] += 1
            if response.status_code >= 400:
                tally.errors += 1
            elif kind == "post":
                ids.append(str(response.json()[side.id_key]))

        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        total = int(args.rate * args.duration)
        t0 = loop.time()
        for i in range(total):
            due = t0 + i / args.rate
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            max_lag = max(max_lag, loop.time() - due)
            if inflight >= args.max_inflight:
                skipped += 1
                continue
            inflight += 1
            is_post = int((i + 1) * args.post_share) > int(i * args.post_share)
            tasks.append(asyncio.create_task(one("post" if is_post else "get")))
        sent_in = loop.time() - t0
        await asyncio.gather(*tasks)
    return {
        "post": tallies["post"].as_dict(),
        "get": tallies["get"].as_dict(),
        "requests": total,
        "skipped_by_driver": skipped,
        "errors_total": tallies["post"].errors + tallies["get"].errors + skipped,
        "achieved_rate_per_s": round((total - skipped) / sent_in, 1) if sent_in else None,
        "driver_max_lag_ms": round(max_lag * 1000, 1),
        "created_ids": ids[len(seed_ids) :],
    }


def measured(stack: LocalStack, side: Side, args: argparse.Namespace) -> dict[str, Any]:
    """Ten starts to read from, a pause, then the driven load with the CPU it cost."""
    seed = []
    for _ in range(10):
        path, body = side.post
        answer = httpx.post(side.base_url + path, headers=side.headers, json=body, timeout=30)
        seed.append(str(answer.json()[side.id_key]))
    time.sleep(2)
    before = cpu_snapshot(stack)
    result = asyncio.run(drive(side, args, seed))
    result["cpu_seconds"] = cpu_delta(before, cpu_snapshot(stack))
    return result


def wait_dispatched(stack: LocalStack, job_ids: list[str], timeout: float = 120) -> int:
    """Poll until every job has its flow run (the API creates them after answering); how
    many have one."""
    started, dispatched = time.monotonic(), 0
    while time.monotonic() - started < timeout:
        with connect(stack.database_url) as conn:
            row = conn.execute(
                "select count(*) as n from public.jobs where id = any(%s::uuid[])"
                " and prefect_flow_run_id is not null",
                [job_ids],
            ).fetchone()
        dispatched = int(row["n"]) if row else 0
        if dispatched >= len(job_ids):
            break
        time.sleep(0.5)
    return dispatched


def engine_side(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    """The engine's API under the load (with --api-only it cannot reach Prefect)."""
    api_env = {"PREFECT_API_URL": "http://127.0.0.1:9/api"} if args.api_only else None
    token = start_engine(stack, limit=10 if args.with_worker else None, api_env=api_env)
    body = {"workflow_id": workflow_id(3), "input_data": {"x": 1}}
    headers = {"Authorization": f"Bearer {token}"}
    side = Side(stack.api_url, headers, ("/workflows/start", body), "/jobs/{id}", "job_id")
    result = measured(stack, side, args)
    created = result.pop("created_ids")
    started = time.monotonic()
    dispatched = 0 if args.api_only else wait_dispatched(stack, created)
    result["jobs_created"] = len(created)
    result["jobs_with_flow_run"] = dispatched
    result["flow_runs_all_created_after_s"] = round(time.monotonic() - started, 1)
    stack.stop("api")
    stack.stop("warm-worker")
    return result


def raw_side(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    """Prefect's own create and read endpoints; no worker, so the runs stay scheduled."""
    deployment, _pool = deploy_raw(stack, "process")
    body = {"parameters": {"x": {"x": 1}, "steps": 3}}
    post = (f"deployments/{deployment}/create_flow_run", body)
    side = Side(stack.prefect_api_url + "/", {}, post, "flow_runs/{id}", "id")
    result = measured(stack, side, args)
    result.pop("created_ids")
    return result


def report(args: argparse.Namespace, machine: dict[str, Any], results: dict[str, Any]) -> None:
    """Print the latency table, each side's rates and the targets; write the JSON."""
    rows = []
    for name, r in results.items():
        for kind in ("post", "get"):
            lat = r[kind]["latency_ms"]
            cells = [lat.get(k) for k in ("n", "p50", "p95", "p99", "max")]
            rows.append((name, kind.upper(), *cells, r[kind]["errors"]))
    print_table(
        f"API under load: {args.rate:g} req/s for {args.duration:g} s, {args.post_share:.0%} POST"
        f"{' (API cannot reach Prefect)' if args.api_only else ''} (ms)",
        ["side", "request", "n", "p50", "p95", "p99", "max", "errors"],
        rows,
    )
    for name, r in results.items():
        print(
            f"{name}: achieved {r['achieved_rate_per_s']} req/s, skipped {r['skipped_by_driver']},"
            f" driver lag max {r['driver_max_lag_ms']} ms, errors {r['errors_total']}"
        )
    engine = results.get("engine", {})
    p99 = {k: engine.get(k, {}).get("latency_ms", {}).get("p99") for k in ("post", "get")}
    targets = [
        check("engine POST p99", p99["post"], "<=", 50.0, "ms"),
        check("engine GET p99", p99["get"], "<=", 20.0, "ms"),
        check("engine errors", engine.get("errors_total"), "<=", 0, "requests"),
    ]
    settings = {
        "rate_per_s": args.rate,
        "duration_s": args.duration,
        "mix": f"{args.post_share:.0%} POST (start), the rest GET (one of the 50"
        " newest), spread evenly",
        "api_reaches_prefect": not args.api_only,
        "max_inflight": args.max_inflight,
        "engine_worker_running": args.with_worker,
        "api_server": "uvicorn, one process (supaflow api)",
        "prefect_server_database": "PostgreSQL (scratch database)",
    }
    finish("api_load", args, {"machine": machine, "settings": settings, **split(results)}, targets)


SIDES = {"engine": engine_side, "raw": raw_side}


def main(argv: list[str] | None = None) -> int:
    """Drive the engine, then raw Prefect; print the table, write the JSON."""
    args = parse(
        __doc__,
        argv,
        ("--rate", 100.0, "requests per second"),
        ("--duration", 60.0, "seconds per side"),
        ("--max-inflight", 500, "most requests waiting at once (more are skipped)"),
        ("--post-share", 0.5, "share of requests that start a job"),
        (
            "--api-only",
            False,
            "diagnostic: the API cannot reach Prefect (a closed port), so a POST costs only"
            " the API and PostgreSQL; jobs stay pending for the dispatcher",
        ),
        ("--with-worker", False, "also run the engine's warm worker"),
        ("--setups", "engine,raw", "comma-separated subset"),
    )
    machine, results = run_setups("api-load", args, SIDES)
    if "raw" in results:
        results["raw_prefect"] = results.pop("raw")
    report(args, machine, results)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
