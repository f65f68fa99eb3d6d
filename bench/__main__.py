"""Run several bench scripts in one process, on one shared stack: fewer stack start-ups.

    .venv/bin/python -m bench latency --n 2 -- throughput --n 10 -- api_load --duration 5

Each script runs as `bench/<script>.py <options>` would, but on the stack the first one started
when it asks for the same kind with the same settings (a fault script and a benchmark cannot
run together). After each, what it started is stopped and `bench <script>: exit <status>`
printed; the exit status is the highest.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from cli import scratch


def main(argv: list[str]) -> int:
    """Run the `--`-separated scripts in order; the highest exit status."""
    runs: list[list[str]] = [[]]
    for arg in argv:
        runs.append([]) if arg == "--" else runs[-1].append(arg)
    codes, scratch.shared = [], {}
    with scratch.keeper:
        for script, *args in filter(None, runs):
            try:
                code = int(importlib.import_module(f"bench.{script}").main(args))
            except Exception:
                traceback.print_exc()
                code = 1
            scratch.end_of_consumer()
            print(f"bench {script}: exit {code}", flush=True)
            codes.append(code)
    return max(codes, default=2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
