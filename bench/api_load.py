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
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from common import (
    BenchStack,
    check,
    common_arguments,
    cpu_delta,
    cpu_snapshot,
    machine_info,
    print_table,
    print_targets,
    summarize,
    workflow_id,
    write_report,
)


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


Send = Callable[[httpx.AsyncClient, str, list[str]], Awaitable[httpx.Response]]


async def drive(
    base_url: str,
    headers: dict[str, str],
    *,
    rate: float,
    duration: float,
    post: Send,
    get: Send,
    seed_ids: list[str],
    id_of: Callable[[httpx.Response], str],
    max_inflight: int,
    post_share: float = 0.5,
) -> dict[str, Any]:
    """Send `rate` requests per second for `duration` seconds, `post_share` of them posts
    (spread evenly), the others gets."""
    tallies = {"post": Tally(), "get": Tally()}
    ids = list(seed_ids)
    inflight = 0
    skipped = 0
    max_lag = 0.0
    rng = random.Random(7)
    async with httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=10,
        limits=httpx.Limits(max_connections=max_inflight, max_keepalive_connections=100),
    ) as client:

        async def one(kind: str) -> None:
            nonlocal inflight
            tally = tallies[kind]
            sender = post if kind == "post" else get
            target = rng.choice(ids[-50:])
            started = time.perf_counter()
            try:
                response = await sender(client, target, ids)
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
                ids.append(id_of(response))

        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        total = int(rate * duration)
        t0 = loop.time()
        for i in range(total):
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            max_lag = max(max_lag, loop.time() - due)
            if inflight >= max_inflight:
                skipped += 1
                continue
            inflight += 1
            is_post = int((i + 1) * post_share) > int(i * post_share)
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


def main(argv: list[str] | None = None) -> int:
    """Drive the engine, then raw Prefect; print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per side")
    parser.add_argument("--max-inflight", type=int, default=500)
    parser.add_argument(
        "--post-share", type=float, default=0.5, help="share of requests that start a job"
    )
    parser.add_argument(
        "--api-only",
        action="store_true",
        help="diagnostic: the API cannot reach Prefect (a closed port), so a POST costs only"
        " the API and PostgreSQL; jobs stay pending for the dispatcher",
    )
    parser.add_argument(
        "--with-worker", action="store_true", help="also run the engine's warm worker"
    )
    parser.add_argument("--setups", default="engine,raw", help="comma-separated subset")
    common_arguments(parser)
    args = parser.parse_args(argv)
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    results: dict[str, Any] = {}
    with BenchStack("api-load", keep=args.keep) as stack:
        machine = machine_info()
        wid = workflow_id(3)
        if "engine" in setups:
            stack.deploy_engine()
            worker = stack.start_warm_worker() if args.with_worker else None
            api = stack.start_api(
                {"PREFECT_API_URL": "http://127.0.0.1:9/api"} if args.api_only else None
            )
            token = stack.token()
            headers = {"Authorization": f"Bearer {token}"}
            seed = [
                httpx.post(
                    f"{stack.api_url}/workflows/start",
                    headers=headers,
                    json={"workflow_id": wid, "input_data": {"x": i}},
                    timeout=30,
                ).json()["job_id"]
                for i in range(10)
            ]

            async def engine_post(
                client: httpx.AsyncClient, _target: str, _ids: list[str]
            ) -> httpx.Response:
                return await client.post(
                    "/workflows/start", json={"workflow_id": wid, "input_data": {"x": 1}}
                )

            async def engine_get(
                client: httpx.AsyncClient, target: str, _ids: list[str]
            ) -> httpx.Response:
                return await client.get(f"/jobs/{target}")

            time.sleep(2)
            before = cpu_snapshot(stack)
            engine = asyncio.run(
                drive(
                    stack.api_url,
                    headers,
                    rate=args.rate,
                    duration=args.duration,
                    post=engine_post,
                    get=engine_get,
                    seed_ids=seed,
                    id_of=lambda r: str(r.json()["job_id"]),
                    max_inflight=args.max_inflight,
                    post_share=args.post_share,
                )
            )
            engine["cpu_seconds"] = cpu_delta(before, cpu_snapshot(stack))
            created = engine.pop("created_ids")
            # The API creates flow runs after answering: how long until every job had one.
            started = time.monotonic()
            dispatched = 0
            while not args.api_only and time.monotonic() - started < 120:
                with stack.connect() as conn:
                    row = conn.execute(
                        "select count(*) as n from public.jobs where id = any(%s::uuid[])"
                        " and prefect_flow_run_id is not null",
                        [created],
                    ).fetchone()
                dispatched = int(row["n"]) if row else 0
                if dispatched >= len(created):
                    break
                time.sleep(0.5)
            engine["jobs_created"] = len(created)
            engine["jobs_with_flow_run"] = dispatched
            engine["flow_runs_all_created_after_s"] = round(time.monotonic() - started, 1)
            results["engine"] = engine
            stack.stop(api)
            if worker is not None:
                stack.stop(worker)
        if "raw" in setups:
            pool = f"bench-process-{secrets.token_hex(3)}"
            deployment = stack.deploy_raw_process(pool)  # no worker: runs stay scheduled
            base = stack.prefect_api_url + "/"

            async def raw_post(
                client: httpx.AsyncClient, _target: str, _ids: list[str]
            ) -> httpx.Response:
                return await client.post(
                    f"deployments/{deployment}/create_flow_run",
                    json={"parameters": {"x": {"x": 1}, "steps": 3}},
                )

            async def raw_get(
                client: httpx.AsyncClient, target: str, _ids: list[str]
            ) -> httpx.Response:
                return await client.get(f"flow_runs/{target}")

            seed = [
                httpx.post(
                    f"{base}deployments/{deployment}/create_flow_run",
                    json={"parameters": {"x": {"x": 1}, "steps": 3}},
                    timeout=30,
                ).json()["id"]
                for _ in range(10)
            ]
            time.sleep(2)
            before = cpu_snapshot(stack)
            raw = asyncio.run(
                drive(
                    base,
                    {},
                    rate=args.rate,
                    duration=args.duration,
                    post=raw_post,
                    get=raw_get,
                    seed_ids=seed,
                    id_of=lambda r: str(r.json()["id"]),
                    max_inflight=args.max_inflight,
                    post_share=args.post_share,
                )
            )
            raw["cpu_seconds"] = cpu_delta(before, cpu_snapshot(stack))
            raw.pop("created_ids")
            results["raw_prefect"] = raw

    rows = []
    for name, r in results.items():
        for kind in ("post", "get"):
            lat = r[kind]["latency_ms"]
            rows.append(
                (
                    name,
                    kind.upper(),
                    lat.get("n"),
                    lat.get("p50"),
                    lat.get("p95"),
                    lat.get("p99"),
                    lat.get("max"),
                    r[kind]["errors"],
                )
            )
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
    targets = [
        check(
            "engine POST p99",
            engine.get("post", {}).get("latency_ms", {}).get("p99"),
            "<=",
            50.0,
            "ms",
        ),
        check(
            "engine GET p99",
            engine.get("get", {}).get("latency_ms", {}).get("p99"),
            "<=",
            20.0,
            "ms",
        ),
        check("engine errors", engine.get("errors_total"), "<=", 0, "requests"),
    ]
    print_targets(targets)
    write_report(
        "api_load",
        {
            "machine": machine,
            "settings": {
                "rate_per_s": args.rate,
                "duration_s": args.duration,
                "mix": f"{args.post_share:.0%} POST (start), the rest GET (one of the 50"
                " newest), spread evenly",
                "api_reaches_prefect": not args.api_only,
                "max_inflight": args.max_inflight,
                "engine_worker_running": args.with_worker,
                "api_server": "uvicorn, one process (supaflow api)",
                "prefect_server_database": "PostgreSQL (scratch database)",
            },
            "engine": results.get("engine"),
            "baselines": {k: v for k, v in results.items() if k != "engine"},
            "targets": targets,
            "all_met": all(t["met"] for t in targets),
        },
        args.report,
    )
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
