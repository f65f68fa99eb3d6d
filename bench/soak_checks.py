"""What the soak (bench/soak.py) measures and checks: the memory of the stack's long-lived
processes over the run (`Memory`), and, at the end, every posted job (`check_jobs`): its
outcome, whether it ran once, whether its row, its events and its Prefect flow run agree;
and the printed report (`print_report`)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]

from bench.fault_workload import CountingServer, count_reruns
from bench.report import print_table, query
from cli.stack import LocalStack
from engine.db.embedded import local_pgdata
from engine.jobs.recovery import ENDED_STATES
from engine.settings import get_settings

MB = 2**20
#: The services whose memory is followed for the whole run (the warm worker is followed
#: per life: it is killed on purpose).
LONG_LIVED = ("api", "prefect-server")
WORKER = "warm-worker"
#: Notes kept per kind of problem (the counts hold them all).
NOTES_PER_KIND = 5


def tree_memory(pids: Sequence[int]) -> tuple[float, float] | None:
    """RSS and PSS in MB summed over `pids` (a process and every one it started); None when
    the first is gone. PSS splits shared pages (PostgreSQL's shared buffers) between the
    processes mapping them, where RSS counts them in each."""
    if not pids:
        return None
    rss = pss = 0
    for index, pid in enumerate(pids):
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            if index == 0:
                return None
            continue
        rss, pss = rss + info.rss, pss + getattr(info, "pss", info.rss)
    return round(rss / MB, 1), round(pss / MB, 1)


def postmaster_pids(stack: LocalStack) -> list[int]:
    """The embedded PostgreSQL's postmaster (first line of its postmaster.pid) and its
    backends; [] when it cannot be read."""
    if stack.embedded is None:
        return []
    settings = get_settings().model_copy(update={"data_dir": stack.embedded.data_dir})
    with contextlib.suppress(OSError, ValueError, IndexError, psutil.Error):
        text = (local_pgdata(settings) / "postmaster.pid").read_text()
        pid = int(text.splitlines()[0])
        return [pid, *(int(p.pid) for p in psutil.Process(pid).children(recursive=True))]
    return []


@dataclass
class Life:
    """One life of the warm worker: its pid, when it began (seconds into the soak), its RSS
    once booted (`start_mb`) and at its last sample (just before its kill), how it ended."""

    pid: int
    began: float
    start_mb: float | None = None
    last_mb: float | None = None
    end: str = "alive at the end"

    def report(self) -> dict[str, Any]:
        """The life with its growth (last - start, MB)."""
        grown = None
        if self.start_mb is not None and self.last_mb is not None:
            grown = round(self.last_mb - self.start_mb, 1)
        return {**asdict(self), "growth_mb": grown}


@dataclass
class Memory:
    """Memory samples of the API, the Prefect server and the embedded PostgreSQL (each with
    the processes it started), and of the warm worker per life. `warm_at` (seconds into the
    soak) is the end of the warm-up: the first sample after it is the start of the report.
    A life's start is its first sample once `boot_seconds` old (imports done)."""

    stack: LocalStack
    began: float
    boot_seconds: float
    warm_at: float | None = None
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lives: list[Life] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self) -> None:
        """One sample of every process followed (of the warm worker: its life's last)."""
        with self.lock:
            now = round(time.monotonic() - self.began, 1)
            trees = {n: self._tree(n) for n in LONG_LIVED}
            trees["postgresql"] = postmaster_pids(self.stack)
            for name, pids in trees.items():
                if pids and (mem := tree_memory(pids)) is not None:
                    entry = {"t": now, "rss_mb": mem[0], "pss_mb": mem[1], "pid": pids[0]}
                    entry["processes"] = len(pids)
                    self.samples.setdefault(name, []).append(entry)
            self._worker(now, last=True)

    def watch(self) -> None:
        """Follow the warm worker's lives (call it often): a new pid begins a life, whose
        start is sampled once it is `boot_seconds` old."""
        with self.lock:
            self._worker(round(time.monotonic() - self.began, 1), last=False)

    def before_kill(self) -> None:
        """Sample the warm worker as it is about to be killed; its life ends killed."""
        with self.lock:
            self._worker(round(time.monotonic() - self.began, 1), last=True)
            if self.lives:
                self.lives[-1].end = "killed"

    def _tree(self, name: str) -> list[int]:
        service = self.stack.services.get(name)
        return [service.pid, *service.descendants()] if service and service.alive() else []

    def _worker(self, now: float, *, last: bool) -> None:
        service = self.stack.services.get(WORKER)
        if service is None or not service.alive():
            return
        if not self.lives or self.lives[-1].pid != service.pid:
            if self.lives and self.lives[-1].end == "alive at the end":
                self.lives[-1].end = "exited"
            self.lives.append(Life(service.pid, now))
        life = self.lives[-1]
        due = life.start_mb is None and now - life.began >= self.boot_seconds
        if (last or due) and (mem := tree_memory(self._tree(WORKER))) is not None:
            life.last_mb = mem[0]
            if due:
                life.start_mb = mem[0]

    def summary(self) -> dict[str, Any]:
        """Per process: RSS and PSS at the start (after the warm-up) and at the end, growth in
        MB and %, the peak, and whether it was restarted; the worker's lives."""
        with self.lock:
            found = {n: _growth(s, self.warm_at or 0.0) for n, s in self.samples.items()}
            lives = [life.report() for life in self.lives]
        starts = [x["start_mb"] for x in lives if x["start_mb"] is not None]
        grown = [x["growth_mb"] for x in lives if x["growth_mb"] is not None]
        worker = {
            "lives": len(lives),
            "first_life_start_mb": starts[0] if starts else None,
            "last_life_start_mb": starts[-1] if starts else None,
            "max_before_kill_mb": max((x["last_mb"] or 0 for x in lives), default=None),
            "max_growth_in_a_life_mb": max(grown, default=None),
            "per_life": lives,
        }
        return {"processes": found, "warm_worker": worker, "warm_up_ended_s": self.warm_at}


def _growth(samples: list[dict[str, Any]], warm_at: float) -> dict[str, Any]:
    start = next((s for s in samples if s["t"] >= warm_at), samples[-1])
    end = samples[-1]
    out: dict[str, Any] = {"start_t": start["t"], "end_t": end["t"]}
    for key in ("rss_mb", "pss_mb"):
        out |= {f"start_{key}": start[key], f"end_{key}": end[key]}
        grown = end[key] - start[key]
        out[f"growth_{key}"] = round(grown, 1)
        out[f"growth_{key[:3]}_pct"] = round(100 * grown / start[key], 1) if start[key] else None
    out |= {"start_processes": start["processes"], "end_processes": end["processes"]}
    out["peak_rss_mb"] = max(s["rss_mb"] for s in samples)
    out["restarted"] = len({s["pid"] for s in samples}) > 1
    return out


@dataclass
class Outcome:
    """The end checks' counts, and the first few notes of each kind of problem."""

    counts: Counter[str] = field(default_factory=Counter)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, text: str) -> None:
        """Count one problem of `kind` and keep its note among the first few."""
        self.counts[kind] += 1
        kept = self.notes.setdefault(kind, [])
        if len(kept) < NOTES_PER_KIND:
            kept.append(text)


def flow_states_for(row: Mapping[str, Any]) -> frozenset[str | None]:
    """The final states the current flow run of a terminal job may be in, as the engine
    writes them: a completed job's run returned (COMPLETED). A failed job's run raised
    after the job was failed by its step (FAILED), or was cancelled (CANCELLED); a job that
    maintenance gave up on after `max_retries` resubmissions keeps the run whose end made it
    give up (recovery gives up on a CRASHED, CANCELLED, FAILED or COMPLETED run, or a lost
    one: None)."""
    entry = row["last_entry"] or {}
    if row["status"] == "completed":
        return frozenset({"COMPLETED"})
    if entry.get("decision") == "give_up":
        return frozenset({*ENDED_STATES, None})
    if entry.get("kind") == "cancelled":
        return frozenset({"CANCELLED"})
    return frozenset({"FAILED"})


def inconsistencies(row: Mapping[str, Any], flow_state: str | None) -> list[str]:
    """Why a terminal job's row, events and flow run disagree ([] when they agree): its
    status is the last state_history entry's; exactly one terminal `status` event, of
    that status; its current flow run in a final state that matches (`flow_states_for`)."""
    status, problems = row["status"], []
    last = (row["last_entry"] or {}).get("status")
    if last != status:
        problems.append(f"status {status}, last state_history entry {last}")
    if list(row["terminal_events"]) != [status]:
        problems.append(f"terminal status events {list(row['terminal_events'])}")
    allowed = flow_states_for(row)
    if flow_state not in allowed:
        names = "/".join(sorted(s or "lost" for s in allowed))
        problems.append(f"flow run {row['flow_run_id']} is {flow_state or 'lost'}, not {names}")
    return problems


def check_jobs(
    stack: LocalStack, counter: CountingServer, posted: Mapping[str, str], keys: Sequence[str]
) -> Outcome:
    """Every posted job (id -> its kind) at the end: completed, failed (and whether a job of
    the failing kind), stuck, lost, duplicated (more than one completed flow run, or more
    than one job for a key), inconsistent, finished and interrupted steps that ran again,
    resubmissions, jobs given up on."""
    ids, out = list(posted), Outcome()
    rows = {r["id"]: r for r in query(stack.database_url, "soak_jobs", [ids])}
    runs = [r["flow_run_id"] for r in rows.values() if r["flow_run_id"]]
    states = {
        r["id"]: r["state"] for r in query(stack.prefect_database_url, "soak_flow_runs", [runs])
    }
    per_job = query(stack.prefect_database_url, "flow_runs_per_job", [ids])
    completed_runs = {r["job"]: int(r["completed"]) for r in per_job}
    events: dict[str, list[dict[str, Any]]] = {}
    for event in query(stack.database_url, "soak_step_events", [ids]):
        events.setdefault(event["job_id"], []).append(event)
    hits = counter.hits_by_job()
    for job_id, kind in posted.items():
        row = rows.get(job_id)
        if row is None:
            out.note("lost", f"job {job_id}: answered 2xx, no row")
            continue
        if completed_runs.get(job_id, 0) > 1:
            out.note("duplicated", f"job {job_id}: {completed_runs[job_id]} completed flow runs")
        reruns = count_reruns(events.get(job_id, []), hits.get(job_id, {}))
        out.counts["rerun_finished"] += reruns.finished
        out.counts["rerun_interrupted"] += reruns.interrupted
        _tally(out, row, kind, states.get(row["flow_run_id"]))
    for key, n in Counter(
        r["key"] for r in query(stack.database_url, "jobs_by_idempotency_key", [list(keys)])
    ).items():
        if n > 1:
            out.note("duplicated", f"key {key}: {n} jobs")
    return out


def _tally(out: Outcome, row: Mapping[str, Any], kind: str, flow_state: str | None) -> None:
    status, job = row["status"], str(row["id"])
    out.counts["resubmissions"] += int(row["resubmissions"])
    if status not in ("completed", "failed"):
        out.note("stuck", f"job {job} ({kind}) {status} after {row['resubmissions']} resubmissions")
        return
    out.counts[status] += 1
    if (row["last_entry"] or {}).get("decision") == "give_up":
        out.note("given_up", f"job {job} ({kind}): {row['error_message']}")
    if status == "failed" and kind != "failing":
        out.note("failed_unexpected", f"job {job} ({kind}): {row['error_message']}")
    if status == "completed" and kind == "failing":
        out.note("failing_completed", f"job {job}: completed though its step `a` always fails")
    if problems := inconsistencies(row, flow_state):
        out.note("inconsistent", f"job {job} {status}: " + "; ".join(problems))


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_report(report: Mapping[str, Any]) -> None:
    """Print the soak's counts, memory per process, the warm worker's lives, the notes of
    each kind of problem, the seconds and whether it held."""
    counts, memory = report["counts"], report["memory"]
    print_table("soak: counts", ["count", "value"], list(counts.items()), align="---:")
    rows: list[list[str]] = []
    for name, m in memory["processes"].items():
        mbs = [m[k] for k in ("start_rss_mb", "end_rss_mb", "growth_rss_mb")]
        mbs += [m["growth_rss_pct"], m["start_pss_mb"], m["end_pss_mb"], m["growth_pss_pct"]]
        rows.append([name, *map(_mb, mbs), f"{m['start_processes']} -> {m['end_processes']}"])
        rows[-1].append("yes" if m["restarted"] else "no")
    headers = ["process", "start RSS MB", "end RSS MB", "growth MB", "growth %"]
    headers += ["start PSS MB", "end PSS MB", "PSS growth %", "processes", "restarted"]
    print_table("soak: memory (RSS and PSS summed over each process tree)", headers, rows)
    lives = memory["warm_worker"]["per_life"]
    shown = lives if len(lives) <= 12 else [*lives[:6], *lives[-6:]]
    keys = ("start_mb", "last_mb", "growth_mb")
    rows = [
        [str(x["pid"]), f"{x['began']:.0f}", *(_mb(x[k]) for k in keys), x["end"]] for x in shown
    ]
    headers = ["pid", "began s", "start RSS MB", "last RSS MB", "growth MB", "end"]
    print_table(f"soak: warm worker lives ({len(lives)})", headers, rows)
    for kind, notes in report["notes"].items():
        print("".join(f"  {kind}: {note}\n" for note in notes), end="")
    seconds = " ".join(f"{k}={v} s" for k, v in report["seconds"].items())
    print(f"seconds: {seconds}; load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"all_ok: {report['all_ok']}" + (f" ({report['failure']})" if report["failure"] else ""))
