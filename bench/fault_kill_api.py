"""Fault: kill -9 of the API between a job's commit and its answer.

Each trial sends --jobs start requests at once, each with its own Idempotency-Key, through a
proxy that passes the requests to the API and holds back its answers (bench/answer_holder.py).
As soon as the first of their jobs is committed, the API process gets SIGKILL (its admission
dispatcher with it) and the proxy closes the connections unanswered. The clients then do what
a client without an answer must: send the same request, same key, again, until the API (the
supervisor restarts it) answers. A request whose job was committed is answered 200 with that
job; one that was not is answered 201 with a new one. Maintenance dispatches the committed
jobs that have no flow run yet. Property, per trial: every key has exactly one job, every job
completes once, and no finished step runs again.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.answer_holder import AnswerHolder
from bench.faults import FaultBench, FaultScript, TrialResult
from bench.report import connect, query, sql
from cli.scratch import kill_service


def _post(bench: FaultBench, base_url: str, key: str, number: int) -> httpx.Response:
    body = {"workflow_id": bench.workflow, "input_data": {"trial": number, "key": key}}
    headers = {"Authorization": f"Bearer {bench.token}", "Idempotency-Key": key}
    return httpx.post(f"{base_url}/workflows/start", json=body, headers=headers, timeout=30)


def _unanswered(bench: FaultBench, base_url: str, key: str, number: int) -> str:
    """Send the request; "answered <status>" or the transport error's name."""
    try:
        return f"answered {_post(bench, base_url, key, number).status_code}"
    except httpx.HTTPError as exc:
        return type(exc).__name__


def _retry(bench: FaultBench, key: str, number: int, timeout: float) -> tuple[int, str]:
    """The same request again until the API answers 2xx; (status, job id)."""
    deadline = time.monotonic() + timeout
    while True:
        bench.heal()
        try:
            answer = _post(bench, bench.stack.api_url, key, number)
            if answer.is_success:
                return answer.status_code, str(answer.json()["job_id"])
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API did not answer key {key} within {timeout:.0f} s")
        time.sleep(0.2)


def _by_key(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["key"], []).append(row)
    return found


def _kill_at_first_commit(bench: FaultBench, keys: list[str], timeout: float) -> dict[str, Any]:
    """Wait until a job of `keys` is committed, then SIGKILL the API; what was committed."""
    deadline, statement = time.monotonic() + timeout, sql("jobs_by_idempotency_key")
    with connect(bench.stack.database_url) as conn:
        while not (committed := _by_key(conn.execute(statement, [keys]).fetchall())):
            if time.monotonic() > deadline:
                raise RuntimeError("no job was committed")
            time.sleep(0.002)
        pid = kill_service(bench.stack, "api")
    bench.fault()
    rows = [row for found in committed.values() for row in found]
    return {
        "api_pid": pid,
        "committed_before_kill": len(committed),
        "dispatched_before_kill": sum(1 for row in rows if row["flow_run_id"]),
    }


def trial(bench: FaultBench, number: int, args: argparse.Namespace) -> TrialResult:
    """Kill the API once the first job commits; retried requests find their jobs, once."""
    result = TrialResult(number)
    keys = [f"fault-{number}-{i}-{secrets.token_hex(4)}" for i in range(args.jobs)]
    with AnswerHolder(bench.stack.api_port) as holder, ThreadPoolExecutor(args.jobs) as pool:
        sent = [pool.submit(_unanswered, bench, holder.url, k, number) for k in keys]
        result.extra = _kill_at_first_commit(bench, keys, timeout=30)
        holder.drop()
        first = [f.result(timeout=60) for f in sent]
    answers = [_retry(bench, key, number, args.timeout) for key in keys]
    result.extra |= {
        "first_answers": sorted(set(first)),
        "replayed_200": sum(1 for status, _ in answers if status == 200),
        "created_201": sum(1 for status, _ in answers if status == 201),
    }
    job_ids = sorted({job_id for _, job_id in answers})
    bench.settle(result, job_ids, args.timeout)
    rows = query(bench.stack.database_url, "jobs_by_idempotency_key", [keys])
    extra_rows = sum(len(found) - 1 for found in _by_key(rows).values())
    result.counts["duplicated"] += extra_rows + (len(keys) - len(job_ids))
    result.ok = result.held() and result.counts["posted"] == len(keys)
    return result


TITLE = "kill -9 of the API between the job's commit and its answer"
OPTIONS = [
    ("--jobs", 3, "start requests in flight per trial", "requests_per_trial"),
    ("--delay", 1.0, "seconds of `wait`", "delay_seconds"),
]
main = FaultScript("fault_kill_api", TITLE, __doc__, trial, OPTIONS)

if __name__ == "__main__":
    sys.exit(main())
