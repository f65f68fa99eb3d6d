"""What bench scripts measure and report with: runs started the engine's way and raw
Prefect's way, seen finished in each side's database, CPU per component; percentiles,
targets, tables, machine facts, the JSON in `.data/bench/<name>.json`, the common options."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import psutil  # type: ignore[import-untyped,unused-ignore]
import psycopg
from psycopg.rows import dict_row

from cli.services import stop_on_signals
from engine.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from cli.stack import LocalStack

T = TypeVar("T")
C = TypeVar("C")
BENCH_DATA = PROJECT_ROOT / ".data" / "bench"
FINAL_RUN = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
#: A command-line option of `parse`: (flag, default, help[, report settings key]).
Option = tuple[Any, ...]
#: The stop-signal handlers `parse` installs, kept for the life of the script.
_STOP_SIGNALS = contextlib.ExitStack()
#: Targets, each a `check` result.
Targets = list[dict[str, Any]]
WARM_LIMIT: Option = ("--limit", 10, "warm worker limit", "warm_worker_limit")
PROCESS_LIMIT: Option = ("--process-limit", 4, "process worker limit", "process_worker_limit")


def admin_url() -> str:
    """The PostgreSQL server scratch databases go on: TEST_ADMIN_DATABASE_URL when set."""
    default = "postgresql://postgres@127.0.0.1:5432/postgres"
    return os.environ.get("TEST_ADMIN_DATABASE_URL", default)


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p95, p99 (nearest rank), mean, min and max of `values`, rounded to 0.1 ms."""
    if not values:
        return {"n": 0}
    ordered, n = sorted(values), len(values)
    rank = {f"p{q}": ordered[max(0, min(n, -(-q * n // 100)) - 1)] for q in (50, 95, 99)}
    rank.update(mean=sum(values) / n, min=ordered[0], max=ordered[-1])
    return {"n": n, **{k: round(v, 4) for k, v in rank.items()}}


def cells(stats: Mapping[str, Any], *keys: str) -> list[Any]:
    """The values of `keys` (default n, p50, p95, p99, max) of a `summarize` result."""
    return [stats.get(k) for k in keys or ("n", "p50", "p95", "p99", "max")]


def check(name: str, value: float | None, op: str, limit: float, unit: str) -> dict[str, Any]:
    """A target: `value op limit` (op is "<=" or ">="); `met` is False when value is None."""
    met = value is not None and (value <= limit if op == "<=" else value >= limit)
    return {"target": name, "value": value, "op": op, "limit": limit, "unit": unit, "met": met}


def fmt(value: Any) -> str:
    """A table cell: floats to 3 decimals, None as '-', booleans as yes/NO."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "NO", None: "-"}[value]
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_table(title: str, headers: Sequence[str], rows: Any, align: str = "---") -> None:
    """Print a Markdown table under a title; cells through `fmt` unless already strings."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([align] * len(headers)) + "|"]
    lines += [
        "| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in r) + " |" for r in rows
    ]
    print(f"\n{title}\n\n" + "\n".join(lines), flush=True)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: cores, CPU, memory, load, versions, date."""
    import prefect

    cpu, pg_version = platform.processor() or "unknown", None
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), cpu
        )
    with contextlib.suppress(psycopg.Error), psycopg.connect(admin_url()) as conn:
        pg_version = (conn.execute("show server_version").fetchone() or [None])[0]
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


def write_report(name: str, data: Mapping[str, Any], path: Path | None = None) -> None:
    """Write `data` (plus `name`) as JSON to `path`, by default `.data/bench/<name>.json`."""
    path = path or BENCH_DATA / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Other work on the machine competes for the same cores: record how busy it was.
    extra = {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    path.write_text(json.dumps({"name": name, **data, **extra}, indent=2, default=str) + "\n")
    print(f"\nreport: {path}", flush=True)


def finish(name: str, args: Any, measured: Mapping[str, Any], targets: Targets) -> None:
    """Print the targets table and write a benchmark's report (`measured` and the targets)."""
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
    met = all(t["met"] for t in targets)
    write_report(name, {**measured, "targets": targets, "all_met": met}, args.report)


def parse(doc: str | None, argv: list[str] | None, *options: Option) -> Any:
    """The command line: `options` typed by their default (a bool is a switch), and --report
    and --keep. `args.settings` holds the options that have a settings key, for the report."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    for flag, default, text, *_key in options:
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=text)
        else:
            kind = float if default is None else type(default)
            parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--report", type=Path, help="JSON path (default .data/bench/<name>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and logs")
    args = parser.parse_args(argv)
    # From here SIGTERM and SIGHUP unwind the script as Ctrl-C does, so a script stopped by
    # either still stops every process of the stack it started.
    _STOP_SIGNALS.enter_context(stop_on_signals())
    args.settings = {o[3]: getattr(args, o[0][2:].replace("-", "_")) for o in options if len(o) > 3}
    return args


def one_at_a_time(n: int, warmup: int) -> list[Option]:
    """--n and --warmup of a benchmark that runs one job at a time per setup."""
    measured = ("--n", n, f"measured jobs per setup (default {n})", "n")
    return [measured, ("--warmup", warmup, "unmeasured jobs first", "warmup")]


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


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    """A new autocommit connection with dict rows."""
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


@cache
def sql(name: str) -> str:
    """The text of `bench/sql/<name>.sql`."""
    return (Path(__file__).resolve().parent / "sql" / f"{name}.sql").read_text()


def query(url: str, name: str, params: Any) -> list[dict[str, Any]]:
    """The rows of `bench/sql/<name>.sql` with `params`, on a connection of its own."""
    with connect(url) as conn:
        return conn.execute(sql(name), params).fetchall()


def poll(value: Callable[[], T], done: Callable[[T], bool], timeout: float, every: float) -> T:
    """`value()` every `every` seconds until `done` says so or `timeout` has passed; the last."""
    deadline = time.monotonic() + timeout
    while not done(current := value()) and time.monotonic() < deadline:
        time.sleep(every)
    return current


def _side(stack: LocalStack, runs: bool) -> tuple[str, str]:
    """(database URL, SQL file prefix) of the jobs, or with `runs` of Prefect's flow runs."""
    return (stack.prefect_database_url, "flow_runs") if runs else (stack.database_url, "jobs")


def wait_final(
    stack: LocalStack, ids: list[str], *, timeout: float, runs: bool = False, every: float = 0.02
) -> dict[str, float]:
    """Poll the job rows (with `runs`: Prefect's flow_run rows), one indexed query every
    `every` seconds, until each is final; the monotonic time each was seen so."""
    (url, side), final = _side(stack, runs), FINAL_RUN if runs else ["completed", "failed"]
    done: dict[str, float] = {}
    with connect(url) as conn:

        def seen() -> int:
            rows = conn.execute(sql(f"{side}_final"), [[i for i in ids if i not in done], final])
            done.update((row["id"], time.monotonic()) for row in rows.fetchall())
            return len(done)

        poll(seen, lambda n: n >= len(ids), timeout, every)
    return done


def outcomes(stack: LocalStack, ids: Sequence[str], *, runs: bool = False) -> dict[str, Any]:
    """Counts by status (state type with `runs`) of these jobs (flow runs), last completion."""
    url, side = _side(stack, runs)
    rows = query(url, f"{side}_by_status", [list(ids)])
    last = max((float(r["last"]) for r in rows if r["last"] is not None), default=None)
    return {"counts": {str(r["state"]): int(r["n"]) for r in rows}, "last_done": last}


def run_raw(deployment_id: UUID, parameters: Mapping[str, Any]) -> str:
    """Raw Prefect: `run_deployment(timeout=0)`; the flow run id."""
    from prefect.deployments import run_deployment

    run: Any = run_deployment(
        deployment_id, parameters=dict(parameters), timeout=0, as_subflow=False
    )
    return str(run.id)


def burst(
    client: Callable[[], AbstractAsyncContextManager[C]],
    count: int,
    concurrency: int,
    one: Callable[[C, int], Awaitable[T]],
) -> list[T | None]:
    """`one(c, 0..count-1)`, `concurrency` at a time, on one client `c` of `client()` opened
    in a new event loop; None where one raised (counted, printed)."""
    gate, errors = asyncio.Semaphore(concurrency), []

    async def guarded(c: C, i: int) -> T | None:
        async with gate:
            try:
                return await one(c, i)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return None

    async def run() -> list[T | None]:
        async with client() as c:
            return list(await asyncio.gather(*(guarded(c, i) for i in range(count))))

    ids = asyncio.run(run())
    if errors:
        print(f"  {len(errors)} submissions failed, first: {errors[0]}", flush=True)
    return ids


def raw_burst(
    deployment: UUID,
    count: int,
    concurrency: int,
    parameters: Callable[[int], dict[str, Any]],
    key: Callable[[int], str | None] = lambda _i: None,
) -> list[str | None]:
    """`count` raw `run_deployment(timeout=0)` calls, `concurrency` at once, with
    `parameters(i)` and idempotency key `key(i)`; the flow run ids (None: failed)."""
    from prefect.client.orchestration import PrefectClient, get_client
    from prefect.deployments import run_deployment

    async def one(client: PrefectClient, i: int) -> str:
        run: Any = await run_deployment(  # type: ignore[misc]
            deployment,
            parameters=parameters(i),
            client=client,
            timeout=0,
            as_subflow=False,
            idempotency_key=key(i),
        )
        return str(run.id)

    return burst(get_client, count, concurrency, one)


def cpu_snapshot(stack: LocalStack) -> dict[str, float]:
    """CPU seconds so far of each running service, of every PostgreSQL server process on the
    machine (other databases' work counts too), of this process and of the machine."""
    snap = {s.name: s.cpu_seconds() for s in stack.services.values() if s.alive()}
    snap["postgresql (all databases)"] = 0.0
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if proc.info.get("name") in ("postgres", "postmaster"):
                snap["postgresql (all databases)"] += sum(proc.cpu_times()[:2])
    snap["bench client"] = float(sum(psutil.Process().cpu_times()[:2]))
    snap["machine (all processes)"] = float(sum(psutil.cpu_times()[:3]))
    return snap


def with_cpu(stack: LocalStack, run: Callable[[], T]) -> tuple[T, dict[str, float]]:
    """`run()`'s result and the CPU seconds spent meanwhile, per component (`cpu_snapshot`),
    and by whatever else ran on the machine (other users' work competes for the CPUs)."""
    before = cpu_snapshot(stack)
    result, after = run(), cpu_snapshot(stack)
    spent = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}
    ours = sum(v for k, v in spent.items() if k != "machine (all processes)")
    spent["other processes"] = round(max(spent.get("machine (all processes)", 0.0) - ours, 0.0), 2)
    return result, spent
