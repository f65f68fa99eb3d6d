"""The workload of the fault scripts, the soak and the concurrent-load benchmark: a counting
endpoint (`CountingServer`, with a flaky one beside it), the counting workflow calling it
(`install_counting_workflow`), and the account of steps that ran again (`count_reruns`)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.stacks import NOOP
from engine.db.connection import shared_store


class CountingServer(ThreadingHTTPServer):
    """A local HTTP server counting calls to `/count/<job>/<step>`; answers `{"n": count}`.
    A step that runs twice shows here as a count of 2: the side effect, not the engine's word.

    `/flaky/<job>/<step>/<fails>` counts the same way, but answers 503 to the first `<fails>`
    calls of that (job, step) and `{"n": count}` after: a step the workflow's retries must
    carry through (or, with more fails than attempts, one that fails for good)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Counted)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def hits(self, job_id: str) -> dict[str, int]:
        """Calls per step for one job."""
        with self.lock:
            return {step: n for (job, step), n in self.calls.items() if job == job_id}

    def hits_by_job(self) -> dict[str, dict[str, int]]:
        """Calls per step of every job, in one pass (`hits` per job scans every call)."""
        found: dict[str, dict[str, int]] = {}
        with self.lock:
            for (job, step), n in self.calls.items():
                found.setdefault(job, {})[step] = n
        return found

    def __exit__(self, *_exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Counted(BaseHTTPRequestHandler):
    server: CountingServer

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        flaky = len(parts) == 4 and parts[0] == "flaky" and parts[3].isdigit()
        if not flaky and (len(parts) != 3 or parts[0] != "count"):
            self.send_error(404)
            return
        with self.server.lock:
            self.server.calls[(parts[1], parts[2])] += 1
            n = self.server.calls[(parts[1], parts[2])]
        if flaky and n <= int(parts[3]):
            self.send_error(503, "flaky: failing on purpose")
            return
        body = json.dumps({"n": n}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def install_counting_workflow(
    workflow_id: str,
    counter_url: str,
    *,
    delay: float | None = None,
    retry: Mapping[str, Any] | None = None,
) -> None:
    """Insert (or replace) a workflow `fetch` -> middle -> `notify`: fetch and notify are
    http_request steps calling the counting server; the middle step is `wait`, a delay of
    `delay` seconds, or without one `reshape`, a no-op. `retry` is the workflow's policy."""
    store, count = shared_store(), f"{workflow_id}-count"
    config = {"url_template": counter_url + "/count/{job}/{step}", "request_timeout_seconds": 10}
    store.upsert_transformer(
        count, "http_request", "bench: counting endpoint", config, "execute-http-request"
    )
    job = {"job.$": "$.job.id"}
    middle = {"id": "reshape", "transformer": NOOP, "input": {"n.$": "$.steps.fetch.body.n"}}
    if delay is not None:
        config = {"seconds": delay}
        store.upsert_transformer(
            f"{workflow_id}-wait", "delay", "bench: the long step", config, "execute-delay"
        )
        middle = {"id": "wait", "transformer": f"{workflow_id}-wait", "input": job}
    steps = [
        {"id": "fetch", "transformer": count, "input": {**job, "step": "fetch"}},
        middle,
        {"id": "notify", "transformer": count, "input": {**job, "step": "notify"}},
    ]
    output = {"fetched.$": "$.steps.fetch.body.n", "notified.$": "$.steps.notify.body.n"}
    definition = {"steps": steps, "output": output, **({"retry": dict(retry)} if retry else {})}
    store.upsert_workflow(workflow_id, "bench: counting workflow", definition)


@dataclass(frozen=True)
class Reruns:
    """Steps that ran again: `finished` ones (had succeeded; must be 0) and `interrupted`
    ones (cut off mid-run, neither succeeded nor failed, then started again: allowed, and
    counted)."""

    finished: int = 0
    interrupted: int = 0

    def __add__(self, other: Reruns) -> Reruns:
        return Reruns(self.finished + other.finished, self.interrupted + other.interrupted)


def count_reruns(events: Iterable[Mapping[str, Any]], hits: Mapping[str, int]) -> Reruns:
    """The re-runs of one job's steps, from its events in order and its calls to the counting
    endpoint.

    By the events, per step: a `step_started` after the step's `step_succeeded` re-runs a
    finished step; one after a `step_started` with no `step_failed` between (a retry follows
    a failure) re-runs an interrupted one. By the endpoint: calls beyond the step's
    `step_started` events are side effects the engine does not know of, counted as finished
    re-runs (the endpoint is the witness the events cannot be).
    """
    last: dict[str, str] = {}
    starts: Counter[str] = Counter()
    finished = interrupted = 0
    for event in events:
        step, kind = event.get("step_id"), event["kind"]
        if step is None or kind not in ("step_started", "step_succeeded", "step_failed"):
            continue
        if kind == "step_started":
            starts[step] += 1
            finished += last.get(step) == "step_succeeded"
            interrupted += last.get(step) == "step_started"
        last[step] = kind
    unknown = sum(max(0, n - starts[step]) for step, n in hits.items())
    return Reruns(finished + unknown, interrupted)
