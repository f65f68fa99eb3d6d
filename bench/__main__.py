"""Run several bench scripts in one process, on one shared stack: fewer stack start-ups.

    .venv/bin/python -m bench latency --n 2 -- throughput --n 10 -- api_load --duration 5

Each script runs as `bench/<script>.py <its options>` would (its table, its report, its exit
status), but a stack the first one started is kept for the next that asks for the same kind
of stack with the same settings, and stopped at the end. A line `bench <script>: exit <n>`
follows each; the exit status is the highest of them. Scripts on different stacks (a fault
script and a benchmark, or fault scripts with different settings) cannot run together.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from bench.stacks import end_of_script, sharing


def main(argv: list[str]) -> int:
    """Run the `--`-separated scripts in order; the highest exit status."""
    runs: list[list[str]] = [[]]
    for arg in argv:
        runs.append([]) if arg == "--" else runs[-1].append(arg)
    codes = []
    with sharing():
        for script, *args in (r for r in runs if r):
            try:
                code = int(importlib.import_module(f"bench.{script}").main(args))
            except Exception:
                traceback.print_exc()
                code = 1
            end_of_script()
            print(f"bench {script}: exit {code}", flush=True)
            codes.append(code)
    return max(codes, default=2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
