"""What every bench script reports: percentiles, targets, Markdown tables, machine facts and
the JSON report in `.data/bench/<name>.json`."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]
import psycopg

from engine.settings import PROJECT_ROOT

BENCH_DATA = PROJECT_ROOT / ".data" / "bench"


def admin_url() -> str:
    """The PostgreSQL server scratch databases go on: TEST_ADMIN_DATABASE_URL when set."""
    return os.environ.get(
        "TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[index]


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p95, p99, mean, min and max of `values` (rounded to 0.1 ms)."""
    if not values:
        return {"n": 0}
    stats = {f"p{round(q * 100)}": percentile(values, q) for q in (0.50, 0.95, 0.99)}
    stats.update(mean=sum(values) / len(values), min=min(values), max=max(values))
    return {"n": len(values), **{k: round(v, 4) for k, v in stats.items()}}


def check(name: str, value: float | None, op: str, limit: float, unit: str) -> dict[str, Any]:
    """A target: `value op limit` (op is "<=" or ">="); `met` is False when value is None."""
    met = value is not None and (value <= limit if op == "<=" else value >= limit)
    return {"target": name, "value": value, "op": op, "limit": limit, "unit": unit, "met": met}


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, None as '-', booleans as yes/NO."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "---"
) -> str:
    """A Markdown table; cells through `fmt` unless already strings."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align for _ in headers) + "|"]
    lines += [
        "| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in r) + " |" for r in rows
    ]
    return "\n".join(lines)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table under a title."""
    print(f"\n{title}\n", flush=True)
    print(markdown_table(headers, rows), flush=True)


def print_targets(targets: Sequence[Mapping[str, Any]]) -> None:
    """Print the targets table (value, limit, met or MISSED)."""
    rows = [
        (
            t["target"],
            f"{fmt(t['value'])} {t['unit']}",
            f"{t['op']} {t['limit']} {t['unit']}",
            "met" if t["met"] else "MISSED",
        )
        for t in targets
    ]
    print_table("Targets", ["target", "value", "limit", "met"], rows)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: cores, CPU, memory, load, versions, date."""
    import prefect

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        models = [line for line in lines if line.startswith("model name")]
        cpu = models[0].split(":", 1)[1].strip() if models else cpu
    pg_version = None
    with contextlib.suppress(psycopg.Error), psycopg.connect(admin_url()) as conn:
        row = conn.execute("show server_version").fetchone()
        pg_version = row[0] if row else None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "prefect": prefect.__version__,
        "postgresql": pg_version,
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_report(name: str, data: Mapping[str, Any], path: Path | None = None) -> Path:
    """Write `data` (plus `name`) as JSON to `path`, by default `.data/bench/<name>.json`."""
    path = path or BENCH_DATA / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Other work on the machine competes for the same cores: record how busy it was.
    extra = {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    path.write_text(json.dumps({"name": name, **data, **extra}, indent=2, default=str) + "\n")
    print(f"\nreport: {path}", flush=True)
    return path


def finish(
    name: str, args: Any, measured: Mapping[str, Any], targets: list[dict[str, Any]]
) -> bool:
    """Print the targets, write a benchmark's report: `measured` holds machine, settings,
    engine and baselines (and anything else to keep); True when every target was met."""
    print_targets(targets)
    met = all(t["met"] for t in targets)
    write_report(name, {**measured, "targets": targets, "all_met": met}, args.report)
    return met


def split(results: Mapping[str, Any]) -> dict[str, Any]:
    """`{"engine": ..., "baselines": {every other setup}}` of results by setup."""
    others = {k: v for k, v in results.items() if k != "engine"}
    return {"engine": results.get("engine"), "baselines": others}


def cells(stats: Mapping[str, Any], *keys: str) -> list[Any]:
    """The values of `keys` (default n, p50, p95, p99, max) of a `summarize` result."""
    return [stats.get(k) for k in keys or ("n", "p50", "p95", "p99", "max")]


def common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every script takes: --report and --keep."""
    parser.add_argument(
        "--report", type=Path, default=None, help="JSON path (default .data/bench/<name>.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and logs")


def parse(doc: str | None, argv: list[str] | None, *options: tuple[str, Any, str]) -> Any:
    """Parse the command line: `options` as (flag, default, help), typed by their default,
    plus --report and --keep; the description is the docstring's first line."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    for flag, default, text in options:
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=text)
        else:
            kind = type(default) if default is not None else float
            parser.add_argument(flag, type=kind, default=default, help=text)
    common_arguments(parser)
    return parser.parse_args(argv)


def setups(value: str) -> list[str]:
    """The names of a comma-separated --setups value."""
    return [s.strip() for s in value.split(",") if s.strip()]


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's file descriptor 2 to `path` (log lines of in-process flows)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
