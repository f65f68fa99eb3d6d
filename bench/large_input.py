"""What a large input_data costs: a 5-step job whose steps read one field of it, small and
large input, the engine against raw Prefect, same server, same run.

    .venv/bin/python bench/large_input.py              # 10 jobs per setup, 60,000 keys
    .venv/bin/python bench/large_input.py --n 1        # the CI size

Setups, one job at a time after a warm-up: engine-small / engine-large (POST /workflows/start
of the 5-step no-op workflow, whose steps read only `$.input.x`, with `{"x": 1}` or with
`--keys` more keys of 4-character values, about 0.9 MB, inside the body limit), and
raw-small / raw-large (the raw 5-task flow on the warm worker type, the same input as its
parameter passed from task to task, as a plain Prefect flow does). Per setup: latency from the
start call until the job / flow run is final, and the CPU seconds of the worker and of the
Prefect server per job. The engine's cost should follow what its steps read, not the input's
size.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import report as out
from bench.latency import measure
from bench.stacks import install_noop_workflow, raw_deployment, run_setups, start_engine
from bench.stacks import workflow_id as noop_workflow
from cli.stack import LocalStack

STEPS = 5


def large_input(keys: int) -> dict[str, Any]:
    """`{"x": 1}` plus `keys` keys of 4-character values (`keys` 0: the small input)."""
    return {"x": 1, **{f"k{i:05d}": "abcd" for i in range(keys)}}


def with_cpu(stack: LocalStack, args: Any, worker: str, run: Any) -> Any:
    """`run()`'s result plus the CPU seconds per measured job of `worker` and Prefect."""
    before = out.cpu_snapshot(stack)
    result = run()
    spent = out.cpu_delta(before, out.cpu_snapshot(stack))
    jobs = args.n + args.warmup
    result["cpu_seconds_per_job"] = {
        name: round(spent.get(key, 0.0) / jobs, 3)
        for name, key in (("worker", worker), ("prefect_server", "prefect-server"))
    }
    return result


def engine(keys: int, label: str) -> Any:
    """Jobs of the 5-step workflow through the API, run by the engine's warm worker."""

    def setup(stack: LocalStack, args: Any) -> Any:
        install_noop_workflow(STEPS)
        headers = {"Authorization": f"Bearer {start_engine(stack, limit=4)}"}
        body = {"workflow_id": noop_workflow(STEPS), "input_data": large_input(keys)}
        with httpx.Client(base_url=stack.api_url, headers=headers, timeout=60) as client:
            post = lambda: str(client.post("/workflows/start", json=body).json()["job_id"])  # noqa: E731
            result = with_cpu(
                stack, args, "warm-worker", lambda: measure(stack, args, label, post, False)
            )
        stack.stop("warm-worker")
        stack.stop("api")
        return result

    return setup


def raw(keys: int, label: str) -> Any:
    """The raw 5-task flow on a warm worker, the input as its parameter."""

    def setup(stack: LocalStack, args: Any) -> Any:
        with raw_deployment(stack, "supaflow-warm", 4) as deployment:
            params = {"x": large_input(keys), "steps": STEPS}
            start = lambda: out.run_raw(deployment, params)  # noqa: E731
            try:
                return with_cpu(
                    stack, args, "raw-warm-worker", lambda: measure(stack, args, label, start, True)
                )
            except Exception as exc:  # Prefect refuses flow-run parameters over 512 KB
                reason = f"{type(exc).__name__}: {str(exc)[:160]}"
                print(f"{label:12s} refused: {reason}", flush=True)
                return {"latency_seconds": {}, "cpu_seconds_per_job": {}, "refused": reason}

    return setup


def main(argv: list[str] | None = None) -> int:
    """Run every setup, print the table, write the JSON; 0 unless a setup could not run."""
    args = out.parse(
        __doc__,
        argv,
        ("--n", 10, "measured jobs per setup (default 10)", "n"),
        ("--warmup", 1, "unmeasured jobs first", "warmup"),
        ("--keys", 60_000, "keys of the large input", "keys"),
        ("--timeout", 120.0, "seconds per job at most"),
        ("--setups", "engine-small,engine-large,raw-small,raw-large", "comma-separated subset"),
    )
    setups = {
        "engine-small": engine(0, "engine-small"),
        "engine-large": engine(args.keys, "engine-large"),
    }
    setups |= {"raw-small": raw(0, "raw-small"), "raw-large": raw(args.keys, "raw-large")}
    machine, results = run_setups("large_input", args, setups)
    rows = [
        (
            name,
            *out.cells(r["latency_seconds"], "n", "p50", "p95"),
            r["cpu_seconds_per_job"].get("worker"),
            r["cpu_seconds_per_job"].get("prefect_server"),
            "refused by Prefect" if r.get("refused") else "",
        )
        for name, r in results.items()
    ]
    title = f"{STEPS}-step job reading one field, input of {args.keys} extra keys (seconds)"
    out.print_table(
        title, ["setup", "n", "p50", "p95", "worker CPU/job", "Prefect CPU/job", "note"], rows
    )
    small, large = (
        results.get(k, {}).get("latency_seconds", {}) for k in ("engine_small", "engine_large")
    )
    ratio = large.get("p50") / small["p50"] if large.get("p50") and small.get("p50") else None
    targets = [out.check("engine large/small input p50", ratio, "<=", 1.5, "x")]
    engine_part = {k: v for k, v in results.items() if k.startswith("engine")}
    baselines = {k: v for k, v in results.items() if not k.startswith("engine")}
    measured = {"machine": machine, "settings": args.settings, "engine": engine_part}
    measured["baselines"] = baselines
    out.finish("large_input", args, measured, targets)
    ran = [r["latency_seconds"].get("n") for k, r in results.items() if k.startswith("engine")]
    return 0 if ran and all(ran) else 1


if __name__ == "__main__":
    sys.exit(main())
