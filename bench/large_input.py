"""What a large input_data costs: a 5-step job whose steps read one field of it, small and
large input, the engine against raw Prefect, same server, same run.

One job at a time after a warm-up, as bench/latency.py measures: engine-small / engine-large
(the 5-step no-op workflow, whose steps read only `$.input.x`, with `{"x": 1}` or with `--keys`
more keys of 4-character values, about 0.9 MB), raw-small / raw-large (the raw 5-task flow on a
warm worker, the input passed from task to task). Also the CPU seconds per job of the worker
and of the Prefect server. The engine's cost should follow what its steps read, not the size.
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
from bench.stacks import Benchmark, install_noop_workflow, starter
from cli.stack import LocalStack

STEPS = 5


def setup(stack: LocalStack, args: Any, label: str) -> Any:
    """Jobs of the 5-step no-op on the engine's warm worker (engine-*) or the raw flow on a
    warm worker (raw-*), limit 4, with the CPU seconds per job of the worker and Prefect."""
    engine, keys = label.startswith("engine"), args.keys if label.endswith("-large") else 0
    data = {"x": 1, **{f"k{i:05d}": "abcd" for i in range(keys)}}
    worker = "warm-worker" if engine else "raw-warm-worker"
    install_noop_workflow(STEPS)
    with starter(stack, "engine" if engine else "supaflow-warm", STEPS, data, 4) as start:
        try:
            result, spent = out.with_cpu(stack, lambda: measure(stack, args, label, start))
        except Exception as exc:  # Prefect refuses flow-run parameters over 512 KB
            if engine:
                raise
            reason = f"{type(exc).__name__}: {str(exc)[:160]}"
            print(f"{label:12s} refused: {reason}", flush=True)
            return {"latency_seconds": {}, "cpu_seconds_per_job": {}, "refused": reason}
    jobs = args.n + args.warmup
    result["cpu_seconds_per_job"] = {
        name: round(spent.get(key, 0.0) / jobs, 3)
        for name, key in (("worker", worker), ("prefect_server", "prefect-server"))
    }
    return result


SETUPS = {
    s: partial(setup, label=s) for s in ("engine-small", "engine-large", "raw-small", "raw-large")
}
KEYS = ("--keys", 60_000, "keys of the large input", "keys")
TIMEOUT = ("--timeout", 120.0, "seconds per job at most")
OPTIONS = [*out.one_at_a_time(10, 1), KEYS, TIMEOUT]


def show(args: Any, results: dict[str, Any]) -> Any:
    """The table; the target: large over small input."""
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
    headers = ["setup", "n", "p50", "p95", "worker CPU/job", "Prefect CPU/job", "note"]
    out.print_table(title, headers, rows)
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
