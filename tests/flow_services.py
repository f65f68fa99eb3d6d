"""Local services and definition helpers for flow tests.

`Scripted` is an HTTP handler answering scripted statuses and recording when every request
arrived and left; `serve` routes a path to it. The `*_transformer` helpers and `add_workflow`
insert definition rows as the service would after `definitions sync`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from dbfixtures import insert_transformer, insert_workflow
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


@dataclass
class Hit:
    """One request a `Scripted` endpoint received."""

    number: int
    entered: float
    left: float = 0.0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    seen: Any = None


class Scripted:
    """A handler answering with scripted statuses, recording every request's time.

    `statuses[n]` answers request n (the last one repeats). `on_request(number)` runs inside
    the handler before it answers (for reading the job row at that moment); its return value
    is kept in `Hit.seen`. `sleep_seconds` holds each request open (to show overlap).
    """

    def __init__(
        self,
        statuses: list[int] | None = None,
        *,
        body: Any = None,
        sleep_seconds: float = 0.0,
        on_request: Callable[[int], Any] | None = None,
    ) -> None:
        self.statuses = statuses or [200]
        self.body = body if body is not None else {"ok": True}
        self.sleep_seconds = sleep_seconds
        self.on_request = on_request
        self.hits: list[Hit] = []
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """How many requests arrived."""
        with self._lock:
            return len(self.hits)

    def __call__(self, request: Request) -> Response:
        with self._lock:
            hit = Hit(
                number=len(self.hits) + 1,
                entered=time.monotonic(),
                body=request.get_data(),
                headers={k.lower(): v for k, v in request.headers.items()},
            )
            self.hits.append(hit)
        if self.on_request is not None:
            hit.seen = self.on_request(hit.number)
        if self.sleep_seconds:
            time.sleep(self.sleep_seconds)
        status = self.statuses[min(hit.number, len(self.statuses)) - 1]
        body = self.body if status < 400 else {"error": f"scripted {status}"}
        hit.left = time.monotonic()
        return Response(json.dumps(body), status=status, content_type="application/json")


def held_first(body: Any = None) -> tuple[Scripted, threading.Event]:
    """An endpoint whose first request is held open until the event is set (at most 120 s),
    and later ones answered at once: a step call that a kill can interrupt mid-way."""
    release = threading.Event()
    handler = Scripted([200], body=body, on_request=lambda n: release.wait(120) if n == 1 else None)
    return handler, release


def serve(server: HTTPServer, path: str, handler: Scripted, method: str = "") -> str:
    """Route `path` on `server` to `handler`; returns its URL."""
    server.expect_request(path, method=method or "__ALL").respond_with_handler(handler)
    return server.url_for(path)


def http_transformer(
    db: psycopg.Connection[Any], transformer_id: str, url: str, **config: Any
) -> str:
    """Insert an http_request transformer calling `url` (extra config keys as given)."""
    return insert_transformer(
        db,
        transformer_id,
        type="http_request",
        config={"url_template": url, "request_timeout_seconds": 10, **config},
        target_function="execute-http-request",
    )


def delay_transformer(db: psycopg.Connection[Any], transformer_id: str, seconds: float) -> str:
    """Insert a delay transformer sleeping `seconds`."""
    return insert_transformer(
        db,
        transformer_id,
        type="delay",
        config={"seconds": seconds},
        target_function="execute-delay",
    )


def add_workflow(db: psycopg.Connection[Any], workflow_id: str, definition: dict[str, Any]) -> str:
    """Insert a workflow row with `definition` (stored as is, like a synced definition)."""
    return insert_workflow(db, workflow_id, definition)


def kill_flow_mid_step(store: Any, job_id: str, step_id: str, log_path: Any) -> None:
    """Run the job's flow in a fresh Python process and SIGKILL it once `step_id` started.

    The kill lands after the step's `step_started` event, so the step is surely in progress:
    no cleanup runs and no final status is written, as in a real crash.
    """
    import os
    import subprocess
    import sys
    import time

    from engine.settings import PROJECT_ROOT

    with open(log_path, "wb") as log:
        # os.environ holds the test's DATABASE_URL, PREFECT_API_URL, HTTP_ALLOWLIST, ...
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from flows.run_workflow import run_workflow; run_workflow({job_id!r})",
            ],
            cwd=PROJECT_ROOT,
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                events = store.events(job_id)
                if any(e["kind"] == "step_started" and e["step_id"] == step_id for e in events):
                    break
                assert proc.poll() is None, f"the flow process exited early ({proc.returncode})"
                time.sleep(0.1)
            else:
                raise AssertionError(f"step {step_id!r} did not start in the subprocess")
        finally:
            proc.kill()
            proc.wait(timeout=30)
