"""Fan-out steps (`for_each`) through real Prefect: one task run per item, results in item
order, failed items failing or collected, the maximum, bounded overlap, and a resubmitted
flow run reusing the items a killed one finished."""

from __future__ import annotations

import contextvars
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from flow_services import add_workflow, http_transformer
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.exceptions import CancelledRun
from pytest_httpserver import HTTPServer
from waiting import wait_until
from werkzeug import Request, Response

from engine.db import job_control
from engine.db.store import JobStore
from engine.settings import PROJECT_ROOT, get_settings
from flows.run_step import StepFailedError
from flows.run_workflow import run_workflow


class Echo:
    """An endpoint answering each item's POST with its own body, recording how many requests
    are in flight at once. An item in `failing` answers `failing_status` on its first n calls
    (`failing[index]`; None: every call); items in `held` wait for `release`."""

    def __init__(
        self,
        *,
        hold_seconds: float = 0.0,
        failing: dict[int, int | None] | None = None,
        failing_status: int = 500,
        held: frozenset[int] = frozenset(),
    ) -> None:
        self.hold_seconds = hold_seconds
        self.failing = failing or {}
        self.failing_status = failing_status
        self.held = held
        self.release = threading.Event()
        self.calls: dict[int, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        body = request.get_json()
        index = int(body["index"])
        with self._lock:
            self.calls[index] = self.calls.get(index, 0) + 1
            call = self.calls[index]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if index in self.held:
                self.release.wait(120)
            if self.hold_seconds:
                time.sleep(self.hold_seconds)  # holds the request open, to measure overlap
            limit = self.failing.get(index, 0)
            fails = index in self.failing and (limit is None or call <= limit)
            status = self.failing_status if fails else 200
            answer = {"error": f"item {index} refused"} if fails else {"echo": body}
            return Response(json.dumps(answer), status=status, content_type="application/json")
        finally:
            with self._lock:
                self.in_flight -= 1


def fan_out_workflow(
    db: psycopg.Connection[Any], http_server: HTTPServer, echo: Echo, **step: Any
) -> str:
    """A workflow whose step `work` POSTs each item of `$.input.items` (with its index) to
    `echo`; `step` adds fields to that step. Returns the workflow id."""
    http_server.expect_request("/echo", method="POST").respond_with_handler(echo)
    http_transformer(db, "echo-api", http_server.url_for("/echo"), method="POST")
    definition = {
        "steps": [
            {
                "id": "work",
                "transformer": "echo-api",
                "for_each": "$.input.items",
                "input": {"body": {"n.$": "$.item.n", "index.$": "$.index"}},
                **step,
            }
        ]
    }
    return add_workflow(db, "fan_out_wf", definition)


def items(count: int) -> dict[str, Any]:
    """Job input with `count` items."""
    return {"items": [{"n": n * 10} for n in range(count)]}


def task_run_names(run_id: str, expected: set[str]) -> set[str]:
    """The names of the flow run's task runs, once all of `expected` are recorded (the server
    records task runs from their events, possibly after the flow run ended)."""

    def check() -> set[str] | None:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)]))
            )
        names = {run.name for run in runs}
        return names if expected <= names else None

    return wait_until(check, 60, f"task runs {sorted(expected)}")  # type: ignore[no-any-return]


def events(store: JobStore, job_id: str, kind: str) -> list[dict[str, Any]]:
    """The job's events of `kind`."""
    return [e for e in store.events(job_id) if e["kind"] == kind]


def test_results_in_item_order_and_one_task_run_per_item(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """Six items, three at a time: the step's output is the items' results in item order,
    the step is a task run named `work` and every item a task run named `work[i]`."""
    echo = Echo(hold_seconds=0.05)
    fan_out_workflow(db, http_server, echo, max_concurrency=3)
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="fan_out_wf", input_data=items(6)
    ).id

    run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    output = row["step_data"]["work"]
    assert [r["body"]["echo"] for r in output] == [{"n": n * 10, "index": n} for n in range(6)]
    assert echo.calls == dict.fromkeys(range(6), 1)
    expected = {"work"} | {f"work[{i}]" for i in range(6)}
    assert task_run_names(str(row["prefect_flow_run_id"]), expected) == expected
    succeeded = events(flow_store, job_id, "item_succeeded")
    assert sorted(e["detail"]["index"] for e in succeeded) == list(range(6))
    (step_done,) = events(flow_store, job_id, "step_succeeded")
    assert step_done["detail"]["items"] == 6


def test_an_item_failing_after_its_retries_fails_the_step(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """Item 2 answers 500 every time: it is tried twice (one retry), then the job fails
    naming the step and the item; one item at a time, so no item after it starts; an item
    that fails once and then succeeds (item 1) only retries."""
    echo = Echo(failing={1: 1, 2: None})
    fan_out_workflow(
        db,
        http_server,
        echo,
        max_concurrency=1,
        retry={"max_retries": 1, "initial_delay_seconds": 0},
    )
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="fan_out_wf", input_data=items(5)
    ).id

    with pytest.raises(StepFailedError):
        run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "failed"
    assert "step 'work'" in row["error_message"]
    assert "item 2 of 5 failed" in row["error_message"]
    assert "server_error" in row["error_message"]
    assert "work" not in (row["step_data"] or {})
    assert echo.calls == {0: 1, 1: 2, 2: 2}  # items 3 and 4 never started
    failed = events(flow_store, job_id, "item_failed")
    assert [(e["detail"]["index"], e["attempt"]) for e in failed] == [(1, 1), (2, 1), (2, 2)]


def test_collect_gathers_item_errors_and_completes(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """With on_item_error "collect", items 1 and 3 (400, not retried) fail and the step
    completes with their results null and their errors listed by index."""
    echo = Echo(failing={1: None, 3: None}, failing_status=400)
    fan_out_workflow(db, http_server, echo, on_item_error="collect", max_concurrency=2)
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="fan_out_wf", input_data=items(5)
    ).id

    run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    output = row["step_data"]["work"]
    assert [r and r["body"]["echo"]["index"] for r in output["results"]] == [0, None, 2, None, 4]
    assert [(e["index"], e["kind"]) for e in output["errors"]] == [
        (1, "client_error"),
        (3, "client_error"),
    ]
    assert all("400" in e["message"] for e in output["errors"]), output["errors"]
    assert echo.calls == dict.fromkeys(range(5), 1)


@pytest.fixture
def at_most_three_items(monkeypatch: pytest.MonkeyPatch, engine_env: str) -> Iterator[None]:
    """MAX_FAN_OUT_ITEMS is 3 for this test."""
    monkeypatch.setenv("MAX_FAN_OUT_ITEMS", "3")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("MAX_FAN_OUT_ITEMS")
    get_settings.cache_clear()


@pytest.mark.usefixtures("at_most_three_items")
def test_the_maximum_bounds_the_fan_out(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A list longer than MAX_FAN_OUT_ITEMS fails the step (kind mapping) before any item
    runs; a list at the maximum runs; a for_each value that is not a list fails too."""
    echo = Echo()
    fan_out_workflow(db, http_server, echo)
    too_long = flow_store.create_job(user_id=user_id, workflow_id="fan_out_wf", input_data=items(4))
    at_max = flow_store.create_job(user_id=user_id, workflow_id="fan_out_wf", input_data=items(3))
    not_list = flow_store.create_job(
        user_id=user_id, workflow_id="fan_out_wf", input_data={"items": {"n": 1}}
    )

    with pytest.raises(StepFailedError):
        run_workflow(too_long.id)
    row = flow_store.get_job(too_long.id)
    assert row["status"] == "failed"
    assert "mapping" in row["error_message"]
    assert "4 items, more than the maximum of 3 (MAX_FAN_OUT_ITEMS)" in row["error_message"]
    assert echo.calls == {}

    run_workflow(at_max.id)
    assert flow_store.get_job(at_max.id)["status"] == "completed"
    assert echo.calls == dict.fromkeys(range(3), 1)

    with pytest.raises(StepFailedError):
        run_workflow(not_list.id)
    row = flow_store.get_job(not_list.id)
    assert row["status"] == "failed"
    assert "gave an object, not a list" in row["error_message"]


def test_fifty_items_never_exceed_max_concurrency(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """50 items under max_concurrency 5, each request held open 0.5 s by a server counting
    the requests in flight: at most 5 are ever open at once, and more than one is (they do
    overlap). The measured maximum is printed."""
    echo = Echo(hold_seconds=0.5)
    fan_out_workflow(db, http_server, echo, max_concurrency=5)
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="fan_out_wf", input_data=items(50)
    ).id

    run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert [r["body"]["echo"]["index"] for r in row["step_data"]["work"]] == list(range(50))
    assert echo.calls == dict.fromkeys(range(50), 1)
    print(f"fan-out of 50 items, max_concurrency 5: at most {echo.max_in_flight} in flight")
    assert 1 < echo.max_in_flight <= 5


def kill_when(store: JobStore, job_id: str, ready: Any, log_path: Path) -> None:
    """Run the job's flow in a fresh Python process and SIGKILL it once `ready(events)`."""
    with open(log_path, "wb") as log:
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

            def check() -> bool:
                assert proc.poll() is None, f"the flow process exited early ({proc.returncode})"
                return bool(ready(store.events(job_id)))

            wait_until(check, 120, "the fan-out to reach the kill point")
        finally:
            proc.kill()
            proc.wait(timeout=30)


def test_resubmitted_run_reuses_items_the_killed_run_finished(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    tmp_path: Path,
) -> None:
    """The flow runs in a subprocess; once items 1-3 are done while item 0's call is held
    open, the process is killed. The next run completes the step: items 1-3 are not called
    again (their stored results are reused, in order), item 0 is."""
    echo = Echo(held=frozenset({0}))
    fan_out_workflow(db, http_server, echo, max_concurrency=4)
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="fan_out_wf", input_data=items(4)
    ).id

    def three_done(evs: list[dict[str, Any]]) -> bool:
        return len([e for e in evs if e["kind"] == "item_succeeded"]) == 3

    kill_when(flow_store, job_id, three_done, tmp_path / "flow-subprocess.log")
    assert flow_store.get_job(job_id)["status"] == "running"
    echo.release.set()
    echo.held = frozenset()

    run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert [r["body"]["echo"]["index"] for r in row["step_data"]["work"]] == [0, 1, 2, 3]
    assert {i: echo.calls[i] for i in (1, 2, 3)} == {1: 1, 2: 1, 3: 1}
    assert echo.calls[0] in (1, 2)  # the killed attempt's call may not have arrived yet
    (step_done,) = events(flow_store, job_id, "step_succeeded")
    assert step_done["detail"]["reused_items"] == 3


def test_a_cancel_stops_new_items_and_a_rerun_runs_every_item_again(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """One item at a time; the owner cancels while item 0's call is held open: item 0
    finishes, no other item starts, and the job fails as cancelled. Rerun, every item runs
    again: item 0's result stored before the rerun is not reused."""
    echo = Echo(held=frozenset({0}))
    fan_out_workflow(db, http_server, echo, max_concurrency=1)
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="fan_out_wf", input_data=items(3)
    ).id
    ended: list[str] = []

    def run() -> None:
        try:
            run_workflow(job_id)
        except CancelledRun:  # the flow run ends Cancelled, which raises for a direct call
            ended.append("cancelled")

    runner = threading.Thread(target=contextvars.copy_context().run, args=(run,))
    runner.start()
    wait_until(lambda: echo.calls.get(0) == 1, 60, "item 0 to be called")
    job_control.cancel_job(flow_store, job_id, user_id)
    echo.release.set()
    runner.join(120)

    assert ended == ["cancelled"]
    row = flow_store.get_job(job_id)
    assert row["status"] == "failed"
    assert row["state_history"][-1]["kind"] == "cancelled"
    assert echo.calls == {0: 1}
    assert [e["detail"]["index"] for e in events(flow_store, job_id, "item_succeeded")] == [0]

    echo.held = frozenset()
    job_control.rerun_job(flow_store, job_id, user_id)
    run_workflow(job_id)

    row = flow_store.get_job(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert [r["body"]["echo"]["index"] for r in row["step_data"]["work"]] == [0, 1, 2]
    assert echo.calls == {0: 2, 1: 1, 2: 1}
    (step_done,) = events(flow_store, job_id, "step_succeeded")
    assert step_done["detail"]["reused_items"] == 0


def test_a_superseded_flow_run_starts_no_more_items(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """One item at a time; while item 0's call is held open another flow run takes the job
    over (as a resubmission does): item 0 finishes, no other item starts, and this run's step
    fails without touching the job, which stays running for its new owner."""
    echo = Echo(held=frozenset({0}))
    fan_out_workflow(db, http_server, echo, max_concurrency=1)
    job_id = flow_store.create_job(
        user_id=user_id, workflow_id="fan_out_wf", input_data=items(3)
    ).id
    failures: list[str] = []

    def run() -> None:
        try:
            run_workflow(job_id)
        except StepFailedError as exc:
            failures.append(str(exc))

    runner = threading.Thread(target=contextvars.copy_context().run, args=(run,))
    runner.start()
    wait_until(lambda: echo.calls.get(0) == 1, 60, "item 0 to be called")
    successor = str(uuid4())
    assert flow_store.claim(job_id, successor)
    echo.release.set()
    runner.join(120)

    assert len(failures) == 1 and "no longer owned by this flow run" in failures[0], failures
    assert echo.calls == {0: 1}
    row = flow_store.get_job(job_id)
    assert row["status"] == "running"
    assert str(row["prefect_flow_run_id"]) == successor
    assert "work" not in (row["step_data"] or {})
