"""Benchmarks and fault scripts: each only measures and reports, on the shared local stack
(cli/stack.py). Run one as a file (`.venv/bin/python bench/latency.py`) or as a module
(`.venv/bin/python -m bench.latency`); see the README's "Fault tests" and "Performance"."""
