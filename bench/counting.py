"""A local HTTP endpoint that counts calls per job and step, and a workflow calling it.

Steps of the counting workflow call `CountingServer`, so a step that runs twice for a job shows
there as a count of 2: the external side effect is what is counted, not what the engine says it
did. `count_reruns` puts both records together.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from bench.stacks import NOOP_TRANSFORMER


class CountingServer:
    """A local HTTP server counting calls to `/count/<job>/<step>`; answers `{"n": count}`."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        counting = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "count":
                    self.send_error(404)
                    return
                with counting._lock:
                    counting.calls[(parts[1], parts[2])] += 1
                    number = counting.calls[(parts[1], parts[2])]
                body = json.dumps({"n": number}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def hits(self, job_id: str) -> dict[str, int]:
        """Calls per step for one job."""
        with self._lock:
            return {step: n for (job, step), n in self.calls.items() if job == job_id}

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def install_counting_workflow(
    workflow_id: str,
    counter_url: str,
    *,
    delay_seconds: float | None = None,
    retry: Mapping[str, Any] | None = None,
) -> None:
    """Insert (or replace) a workflow `fetch` -> middle -> `notify`: fetch and notify are
    http_request steps calling the counting server; the middle step is `wait`, a delay of
    `delay_seconds`, or without one `reshape`, a no-op. `retry` is the workflow's policy."""
    from engine.db.connection import shared_store

    store = shared_store()
    count_id = f"{workflow_id}-count"
    url = counter_url + "/count/{job}/{step}"
    config = {"url_template": url, "request_timeout_seconds": 10}
    store.upsert_transformer(
        count_id, "http_request", "bench: counting endpoint", config, "execute-http-request"
    )
    job = {"job.$": "$.job.id"}
    middle = {
        "id": "reshape",
        "transformer": NOOP_TRANSFORMER,
        "input": {"n.$": "$.steps.fetch.body.n"},
    }
    if delay_seconds is not None:
        wait_id = f"{workflow_id}-wait"
        config = {"seconds": delay_seconds}
        store.upsert_transformer(wait_id, "delay", "bench: the long step", config, "execute-delay")
        middle = {"id": "wait", "transformer": wait_id, "input": job}
    definition: dict[str, Any] = {
        "steps": [
            {"id": "fetch", "transformer": count_id, "input": {**job, "step": "fetch"}},
            middle,
            {"id": "notify", "transformer": count_id, "input": {**job, "step": "notify"}},
        ],
        "output": {"fetched.$": "$.steps.fetch.body.n", "notified.$": "$.steps.notify.body.n"},
    }
    if retry is not None:
        definition["retry"] = dict(retry)
    store.upsert_workflow(workflow_id, "bench: counting workflow", definition)


def count_reruns(events: Iterable[Mapping[str, Any]], hits: Mapping[str, int]) -> int:
    """How many times a finished step ran again.

    Per step, the larger of: `step_started` events after the step's first `step_succeeded`
    event (the engine's record), and calls to the counting endpoint beyond the first (the
    side effect). A step cut off before its output was saved and then run again is not a
    re-run by the events; it is one by the endpoint if it had already made its call.
    """
    seen_success: set[str] = set()
    by_events: Counter[str] = Counter()
    for event in events:
        step = event.get("step_id")
        if step is None:
            continue
        if event["kind"] == "step_succeeded":
            seen_success.add(step)
        elif event["kind"] == "step_started" and step in seen_success:
            by_events[step] += 1
    steps = set(by_events) | set(hits)
    return sum(max(by_events[s], hits.get(s, 0) - 1, 0) for s in steps)
