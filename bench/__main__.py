"""Run several bench scripts in one process, on one shared stack (a fault script and a
benchmark cannot run together): `python -m bench latency --n 2 -- throughput --n 10`. Each
runs as `bench/<script>.py <options>` would; after each, what it started is stopped and
`bench <script>: exit <status>` printed. The exit status is the highest."""

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
