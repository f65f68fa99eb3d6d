"""Soak: thousands of mixed jobs on the stack `supaflow up` runs, the warm worker killed -9
every --kill-every seconds.

The stack is `scratch.embedded_stack` (embedded PostgreSQL, Prefect server, warm worker, API)
with the fault scripts' fast recovery settings. --jobs jobs are posted through the API at
--rate per second (with --max-in-flight N, only while fewer than N posted jobs are
unfinished: a machine slower than --rate then holds a bounded backlog), each with its own
Idempotency-Key (a post without an answer, or answered
5xx or 429, is sent again with the same key, a bounded number of times). The workflow of job i
is chosen by i % 20: 70% plain, 10% with a long step (a `delay` of --long seconds), 10% with a
flaky step that fails once and is retried (max_retries 2, 0.5 s apart), 10% with a step that
fails more often than its retries allow: those fail, and are the expected failures. Every
workflow runs `fetch`, then `a` and `b` in parallel, then `notify` once both are done.

Meanwhile, and until every job is terminal: maintenance passes run as the deployment's
schedule runs them, a supervisor restarts what died, and the warm worker is killed -9 every
--kill-every seconds (±10%, from a generator seeded with --seed); with `--kill-until posted`
the kills stop at the last post (the jobs then settle without faults). The memory of the API,
the Prefect server and the embedded PostgreSQL (each with every process it started) is
sampled from the end of the warm-up (the first 100 jobs or 60 s, a quarter of a smaller run)
to the end; the warm worker's per life, from its boot to just before its kill.

At the end every job is checked (bench/soak_checks.py). The soak holds (`all_ok`, exit 0)
when no job is lost, duplicated, stuck or inconsistent, no finished step ran again, every post
was answered 2xx, and the jobs that failed are exactly those of the failing share. Posting
stops past --max-minutes; the jobs then settle for at most --settle-minutes and the soak
reports.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.fault_workload import CountingServer
from bench.faults import FAST_RECOVERY_ENV, MaintenanceLoop
from bench.report import machine_info, parse, write_report
from bench.soak_checks import WORKER, Memory, Outcome, check_jobs, print_report
from bench.stacks import bench_root
from cli import scratch
from cli.restart_policy import RestartPolicy
from cli.stack import LocalStack
from engine.db.connection import shared_store

KINDS = ("plain", "long", "retried", "failing")
RETRY = {"max_retries": 2, "strategy": "fixed", "initial_delay_seconds": 0.5}
#: 503s the flaky step `a` answers first: once for `retried`; for `failing` more than its
#: three attempts can outlast, in every flow run a resubmission makes.
FAILS = {"retried": 1, "failing": 99}
WARM_UP_JOBS, WARM_UP_SECONDS = 100, 60.0
POST_ATTEMPTS = 8
PROGRESS_SECONDS = 60.0
OPTIONS = [
    ("--jobs", 10000, "jobs to post (default 10000)", "jobs"),
    ("--rate", 2.0, "jobs posted per second", "rate_per_second"),
    ("--max-in-flight", 0, "post only while fewer are unfinished (0: no cap)", "max_in_flight"),
    ("--kill-every", 60.0, "seconds between kills of the warm worker (±10%%)", "kill_every_s"),
    ("--kill-until", "terminal", "keep killing until `terminal` or `posted`", "kill_until"),
    ("--long", 5.0, "seconds of the long jobs' `delay` step", "long_step_s"),
    ("--seed", 1, "seed of the kills' jitter", "seed"),
    ("--max-minutes", 150.0, "stop posting after this long", "max_minutes"),
    ("--settle-minutes", 10.0, "then wait this long at most for the jobs", "settle_minutes"),
    # The deployment's schedule runs a maintenance pass every 30 s (prefect.yaml).
    ("--maintenance-every", 30.0, "seconds between maintenance passes", "maintenance_every_s"),
    ("--sample-every", 10.0, "seconds between memory samples", "sample_every_s"),
]


def kind_of(index: int) -> str:
    """The workflow kind of job `index`, by index % 20: 14 plain, 2 long, 2 retried, 2
    failing."""
    slot = index % 20
    return KINDS[(slot >= 14) + (slot >= 16) + (slot >= 18)]


def install_soak_workflows(counter_url: str, long_seconds: float) -> None:
    """Insert (or replace) the workflows `soak_<kind>` and their transformers: `fetch`,
    then `a` and `b` in parallel, then `notify`; every step calls the counting server but
    the long kind's `a` (a delay) and the flaky kinds' `a` (its flaky endpoint)."""
    store, http = shared_store(), {"request_timeout_seconds": 10}
    for name, path in (("count", "/count/{job}/{step}"), ("flaky", "/flaky/{job}/{step}/{fails}")):
        config = {"url_template": counter_url + path, **http}
        store.upsert_transformer(
            f"soak-{name}", "http_request", f"soak: {name} endpoint", config, "execute-http-request"
        )
    store.upsert_transformer(
        "soak-long", "delay", "soak: the long step", {"seconds": long_seconds}, "execute-delay"
    )
    for kind in KINDS:
        store.upsert_workflow(f"soak_{kind}", f"soak: {kind} jobs", _definition(kind))


def _definition(kind: str) -> dict[str, Any]:
    job = {"job.$": "$.job.id"}

    def step(step_id: str, after: list[str], transformer: str = "soak-count", **extra: Any) -> Any:
        step_input = {**job, "step": step_id, **extra}
        return {"id": step_id, "transformer": transformer, "input": step_input, "depends_on": after}

    a = step("a", ["fetch"])
    if kind == "long":
        a = {"id": "a", "transformer": "soak-long", "input": job, "depends_on": ["fetch"]}
    elif kind in FAILS:
        a = step("a", ["fetch"], "soak-flaky", fails=FAILS[kind])
    steps = [step("fetch", []), a, step("b", ["fetch"]), step("notify", ["a", "b"])]
    output = {"fetched.$": "$.steps.fetch.body.n", "notified.$": "$.steps.notify.body.n"}
    return {"steps": steps, "output": output, "retry": dict(RETRY)}


@dataclass
class Poster:
    """Posts jobs as one user, each with its own Idempotency-Key; the jobs answered 2xx (id
    -> kind), every key sent, and the posts never answered 2xx."""

    api_url: str
    token: str
    run: str = field(default_factory=lambda: secrets.token_hex(4))
    posted: dict[str, str] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retries: int = 0
    #: Seconds posting waited for unfinished jobs (--max-in-flight).
    held_back: float = 0.0

    def post(self, client: httpx.Client, index: int) -> None:
        """POST /workflows/start for job `index`; without an answer, or answered 5xx or 429,
        the same request (same key) again after a growing pause, POST_ATTEMPTS times at most."""
        key, kind = f"soak-{self.run}-{index}", kind_of(index)
        body = {"workflow_id": f"soak_{kind}", "input_data": {"index": index, "kind": kind}}
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": key}
        self.keys.append(key)
        last = ""
        for attempt in range(POST_ATTEMPTS):
            try:
                answer = client.post(f"{self.api_url}/workflows/start", json=body, headers=headers)
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            else:
                if answer.is_success:
                    self.posted[str(answer.json()["job_id"])] = kind
                    return
                last = f"answered {answer.status_code}"
                if answer.status_code < 500 and answer.status_code != 429:
                    break
            self.retries += 1
            time.sleep(min(8.0, 0.5 * 2**attempt))
        self.errors.append(f"key {key}: {last}")


class Chaos:
    """In a thread: the supervisor's look every 0.25 s, a memory sample every
    --sample-every s, and, while `killing` is set, a kill -9 of the warm worker every
    --kill-every s ±10%. `failure`: why it stopped early (the supervisor gave up, an error)."""

    def __init__(self, stack: LocalStack, memory: Memory, args: argparse.Namespace) -> None:
        self.stack, self.memory, self.args = stack, memory, args
        self.rng = random.Random(args.seed)
        # The kills are at least 0.9 x --kill-every apart: a window shorter than that never
        # holds two of them, so each restart waits the first delay (1 s); a service that
        # dies 5 times within the window still ends the soak, as it would end `supaflow up`.
        policy = RestartPolicy(window_seconds=0.45 * args.kill_every)
        self.supervisor = stack.supervisor(policy)
        self.kills: list[dict[str, Any]] = []
        self.killing = threading.Event()
        self.killing.set()
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-chaos", daemon=True)

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _interval(self) -> float:
        return float(self.args.kill_every) * self.rng.uniform(0.9, 1.1)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:
            self.failure = f"error: {type(exc).__name__}: {exc}"

    def _loop(self) -> None:
        next_kill, next_sample = time.monotonic() + self._interval(), 0.0
        while not self._stop.wait(0.25):
            now = time.monotonic()
            if (name := self.supervisor.check(now)) is not None:
                self.failure = f"the supervisor gave up on {name}"
                return
            self.memory.watch()
            if now >= next_sample:
                self.memory.sample()
                next_sample = now + self.args.sample_every
            if now >= next_kill and self.killing.is_set():
                # A worker still restarting is killed once it is back.
                next_kill = now + (self._interval() if self._kill(now) else 0.5)

    def _kill(self, now: float) -> bool:
        if not self.stack.services[WORKER].alive():
            return False
        self.memory.before_kill()
        pid = scratch.kill_service(self.stack, WORKER)
        self.kills.append({"t": round(now - self.memory.began, 1), "pid": pid})
        return True


def _progress(memory: Memory, poster: Poster, chaos: Chaos, passes: int) -> None:
    statuses = shared_store().statuses(list(poster.posted)).values()
    done = sum(s in ("completed", "failed") for s in statuses)
    print(
        f"t={time.monotonic() - memory.began:.0f} s posted={len(poster.posted)} "
        f"terminal={done} kills={len(chaos.kills)} maintenance passes={passes}",
        flush=True,
    )


class InFlight:
    """The posted jobs not yet terminal, for --max-in-flight: posting waits while there are
    that many, so a machine slower than --rate gets a backlog it can hold, not one that
    grows for the whole soak. Only the unfinished jobs are read again."""

    def __init__(self, poster: Poster, chaos: Chaos) -> None:
        self.poster, self.chaos, self.open, self.seen = poster, chaos, set[str](), 0

    def wait_below(self, cap: int) -> None:
        """Return once fewer than `cap` posted jobs are unfinished (at once if cap is 0)."""
        began = time.monotonic()
        while cap > 0 and self.chaos.failure is None:
            posted = list(self.poster.posted)
            self.open.update(posted[self.seen :])
            self.seen = len(posted)
            if len(self.open) < cap:
                break
            statuses = shared_store().statuses(list(self.open))
            self.open -= {j for j, s in statuses.items() if s in ("completed", "failed")}
            if len(self.open) >= cap:
                time.sleep(0.5)
        self.poster.held_back += time.monotonic() - began


def post_all(poster: Poster, memory: Memory, chaos: Chaos, loop: MaintenanceLoop) -> float:
    """Post --jobs jobs at --rate per second (stopping past --max-minutes, or once `chaos`
    failed); mark the end of the warm-up on `memory`. The seconds it took."""
    args, started = chaos.args, time.monotonic()
    warm_jobs, shown = min(WARM_UP_JOBS, max(1, args.jobs // 4)), started
    in_flight = InFlight(poster, chaos)
    with httpx.Client(timeout=10) as client:
        for index in range(args.jobs):
            now = time.monotonic()
            if now - memory.began > args.max_minutes * 60 or chaos.failure:
                poster.errors.append(
                    f"stopped posting after {index} jobs: {chaos.failure or 'time'}"
                )
                break
            time.sleep(max(0.0, started + index / args.rate - now))
            in_flight.wait_below(args.max_in_flight)
            poster.post(client, index)
            warm = index + 1 >= warm_jobs or time.monotonic() - started >= WARM_UP_SECONDS
            if memory.warm_at is None and warm:
                memory.warm_at = round(time.monotonic() - memory.began, 1)
            if time.monotonic() - shown >= PROGRESS_SECONDS:
                _progress(memory, poster, chaos, loop.passes)
                shown = time.monotonic()
    return time.monotonic() - started


def settle(poster: Poster, memory: Memory, chaos: Chaos, loop: MaintenanceLoop) -> float:
    """Wait until every posted job is terminal (at most --settle-minutes); the seconds."""
    started, store = time.monotonic(), shared_store()
    deadline, shown = started + chaos.args.settle_minutes * 60, started
    while time.monotonic() < deadline and chaos.failure is None:
        statuses = store.statuses(list(poster.posted)).values()
        if all(s in ("completed", "failed") for s in statuses):
            break
        if time.monotonic() - shown >= PROGRESS_SECONDS:
            _progress(memory, poster, chaos, loop.passes)
            shown = time.monotonic()
        time.sleep(1.0)
    return time.monotonic() - started


def soak(stack: LocalStack, counter: CountingServer, args: argparse.Namespace) -> dict[str, Any]:
    """Post, kill, heal, maintain, settle and check on a running stack; the report's body."""
    memory = Memory(stack, time.monotonic(), boot_seconds=min(10.0, args.kill_every / 2))
    poster = Poster(stack.api_url, stack.mint_token("soak@example.com"))
    chaos = Chaos(stack, memory, args)
    with MaintenanceLoop(stack, every=args.maintenance_every) as loop, chaos:
        posting = post_all(poster, memory, chaos, loop)
        if args.kill_until == "posted":
            chaos.killing.clear()
        settling = settle(poster, memory, chaos, loop)
        memory.sample()
    checking = time.monotonic()
    outcome = check_jobs(stack, counter, poster.posted, poster.keys)
    counts = _counts(outcome, poster, chaos, loop.passes)
    ok = chaos.failure is None and _held(counts)
    seconds = {"posting": posting, "posting_held_back": poster.held_back, "settle": settling}
    seconds["checks"] = time.monotonic() - checking
    return {
        "counts": counts,
        "expected_failures": "the jobs of the failing kind (index % 20 in 18, 19: 10%)",
        "memory": memory.summary(),
        "kills": chaos.kills,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "notes": {**outcome.notes, "post_errors": poster.errors[:10]},
        "failure": chaos.failure,
        "all_ok": ok,
    }


COUNTS: tuple[str, ...] = (
    "posted",
    "completed",
    "failed",
    "expected_failures",
    "failed_unexpected",
    "failing_completed",
    "stuck",
    "lost",
    "duplicated",
    "inconsistent",
    "rerun_finished",
    "rerun_interrupted",
    "resubmissions",
    "given_up",
    "kills",
    "post_errors",
    "post_retries",
    "maintenance_passes",
)


def _counts(outcome: Outcome, poster: Poster, chaos: Chaos, passes: int) -> dict[str, int]:
    found = dict.fromkeys(COUNTS, 0) | dict(outcome.counts)
    found |= {"posted": len(poster.posted), "kills": len(chaos.kills), "maintenance_passes": passes}
    found["expected_failures"] = sum(kind == "failing" for kind in poster.posted.values())
    found["post_errors"] = sum(not e.startswith("stopped") for e in poster.errors)
    found["post_retries"] = poster.retries
    return found


def _held(c: Mapping[str, int]) -> bool:
    never = ["lost", "duplicated", "stuck", "inconsistent", "rerun_finished", "post_errors"]
    never += ["failed_unexpected", "failing_completed"]
    return all(c[k] == 0 for k in never) and c["failed"] == c["expected_failures"]


def main(argv: list[str] | None = None) -> int:
    """Run the soak with these arguments (None: the command line's); 0 iff it held."""
    args = parse(__doc__, argv, *OPTIONS)
    if args.kill_until not in ("terminal", "posted") or args.rate <= 0 or args.kill_every <= 0:
        raise SystemExit("--kill-until is terminal or posted; --rate and --kill-every are > 0")
    load, began, env = [round(x, 2) for x in os.getloadavg()], time.monotonic(), FAST_RECOVERY_ENV
    stack_of = scratch.embedded_stack(bench_root("soak"), env, worker="warm", keep=args.keep)
    with CountingServer() as counter, stack_of as stack:
        install_soak_workflows(counter.url, args.long)
        booted = time.monotonic()
        body = soak(stack, counter, args)
    body["seconds"] |= {
        "boot": round(booted - began, 1),
        "total": round(time.monotonic() - began, 1),
    }
    machine = machine_info() | {"load_average_at_start": load}
    print_report(body)
    settings = {**args.settings, "env": env}
    write_report("soak", {"machine": machine, "settings": settings, **body}, args.report)
    return 0 if body["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
