"""What a large input_data costs: a 5-step job whose steps read one field of it, small and
large input, the engine against raw Prefect, same server, same run.

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
from functools import partial
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench import report as out
from bench.latency import measure
from bench.stacks import Benchmark, engine_poster, install_noop_workflow, raw_deployment
from bench.stacks import workflow_id as noop_workflow
from cli.stack import LocalStack

STEPS = 5


def large_input(keys: int) -> dict[str, Any]:
    """`{"x": 1}` plus `keys` keys of 4-character values (`keys` 0: the small input)."""
    return {"x": 1, **{f"k{i:05d}": "abcd" for i in range(keys)}}


def with_cpu(stack: LocalStack, args: Any, worker: str, run: Any) -> Any:
    """`run()`'s result plus the CPU seconds per measured job of `worker` and Prefect."""
    result, spent = out.with_cpu(stack, run)
    jobs = args.n + args.warmup
    result["cpu_seconds_per_job"] = {
        name: round(spent.get(key, 0.0) / jobs, 3)
        for name, key in (("worker", worker), ("prefect_server", "prefect-server"))
    }
    return result


def engine(stack: LocalStack, args: Any, label: str) -> Any:
    """Jobs of the 5-step workflow through the API, run by the engine's warm worker."""
    install_noop_workflow(STEPS)
    data = large_input(args.keys if label.endswith("-large") else 0)
    with engine_poster(stack, noop_workflow(STEPS), data, limit=4, timeout=60) as post:
        return with_cpu(
            stack, args, "warm-worker", lambda: measure(stack, args, label, post, False)
        )


def raw(stack: LocalStack, args: Any, label: str) -> Any:
    """The raw 5-task flow on a warm worker, the input as its parameter."""
    with raw_deployment(stack, "supaflow-warm", 4) as deployment:
        params = {"x": large_input(args.keys if label.endswith("-large") else 0), "steps": STEPS}
        start = lambda: out.run_raw(deployment, params)  # noqa: E731
        try:
            return with_cpu(
                stack, args, "raw-warm-worker", lambda: measure(stack, args, label, start, True)
            )
        except Exception as exc:  # Prefect refuses flow-run parameters over 512 KB
            reason = f"{type(exc).__name__}: {str(exc)[:160]}"
            print(f"{label:12s} refused: {reason}", flush=True)
            return {"latency_seconds": {}, "cpu_seconds_per_job": {}, "refused": reason}


SETUPS = {label: partial(engine, label=label) for label in ("engine-small", "engine-large")}
SETUPS |= {label: partial(raw, label=label) for label in ("raw-small", "raw-large")}
KEYS = ("--keys", 60_000, "keys of the large input", "keys")
TIMEOUT = ("--timeout", 120.0, "seconds per job at most")
OPTIONS = [*out.one_at_a_time(10, 1), KEYS, TIMEOUT]


def show(args: Any, results: dict[str, Any]) -> Any:
    """The table; the target (large over small input), the engine's and the baselines'
    results, whether the engine's setups measured a job."""
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
    ran = [r["latency_seconds"].get("n") for r in engine_part.values()]
    return targets, {"engine": engine_part, "baselines": baselines}, bool(ran) and all(ran)


main = Benchmark("large_input", __doc__, OPTIONS, SETUPS, show)

if __name__ == "__main__":
    sys.exit(main())
