"""The warm worker: jobs run in-process in a long-lived Prefect worker, through real Prefect.

Every job here goes the production way: a flow run created from a deployment on a
`supaflow-warm` work pool, its id stored on the job row (which fires the NOTIFY), the worker
claiming it and running `run_workflow` in one of its threads, states and task runs reported
to the session's Prefect server. Workers run in a thread of the test process (so test-only
executors can be registered) except where a process has to be killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any
from uuid import UUID

import psycopg
import pytest
from flow_services import Scripted, add_workflow, delay_transformer, http_transformer, serve
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelling
from pytest_httpserver import HTTPServer
from waiting import wait_until
from warm_workers import (
    deploy,
    dispatch,
    job_events,
    max_overlap,
    read_flow_run,
    unique_pool,
    wait_for_jobs,
    wait_for_owner,
    wait_for_state,
    wait_for_task_runs,
    warm_worker,
)

from engine.db.listen import NotificationListener, reconnect_delay
from engine.db.store import JobStore
from engine.settings import PROJECT_ROOT
from tasks import registry
from worker.flow_loading import entrypoint_module
from worker.ownership import (
    Owner,
    infrastructure_id,
    owner_is_gone,
    parse_infrastructure_id,
    process_alive,
)
from worker.worker import WarmWorker

# -- pure helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("warm:host-a:123:456", Owner("host-a", 123, "456")),
        ("warm:host-a:123:", Owner("host-a", 123, "")),
        ("host-a:123", None),  # a process worker's pid
        ("warm:host-a:abc:1", None),
        ("warm::123:1", None),
        ("", None),
        (None, None),
    ],
)
def test_infrastructure_id_parsing(value: str | None, expected: Owner | None) -> None:
    """Only ids stamped by a warm worker name an owner process; anything else is no owner."""
    assert parse_infrastructure_id(value) == expected


def test_infrastructure_id_round_trips() -> None:
    """The id a worker stamps parses back to the same host, pid and start."""
    assert parse_infrastructure_id(infrastructure_id("h", 42, "99")) == Owner("h", 42, "99")


@pytest.mark.parametrize(
    ("value", "alive", "gone"),
    [
        ("warm:here:10:5", False, True),  # our host, process gone: orphaned run
        ("warm:here:10:5", True, False),  # our host, process alive
        ("warm:there:10:5", False, False),  # another host: only heartbeats can tell
        ("here:10", False, False),  # not a warm worker's run
        (None, False, False),  # never started
    ],
)
def test_owner_is_gone(value: str | None, alive: bool, gone: bool) -> None:
    """A run is orphaned only when its owner is a warm worker on this host that has exited."""
    assert owner_is_gone(value, host="here", alive=lambda _pid, _start: alive) is gone


def test_process_alive_tells_this_process_from_an_exited_one() -> None:
    """This process is alive; a reaped child is not; a wrong start time means pid reuse."""
    assert process_alive(os.getpid(), "")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid, "")
    assert not process_alive(os.getpid(), "not-my-start-time")


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        ("flows/run_workflow.py:run_workflow", ("flows.run_workflow", "run_workflow")),
        ("flows.maintenance:maintenance", ("flows.maintenance", "maintenance")),
        ("/abs/path/flow.py:f", None),
        ("../outside.py:f", None),
        ("flows/run_workflow.py", None),
        ("flows/my-flow.py:f", None),
    ],
)
def test_entrypoint_module(entrypoint: str, expected: tuple[str, str] | None) -> None:
    """Project-relative file entrypoints and module entrypoints map to importable modules."""
    assert entrypoint_module(entrypoint) == expected


@pytest.mark.parametrize(
    ("failures", "delay"), [(0, 0.0), (1, 0.5), (2, 1.0), (4, 4.0), (10, 30.0)]
)
def test_reconnect_delay_doubles_and_caps(failures: int, delay: float) -> None:
    """A lost LISTEN connection is retried after 0.5 s, doubling, at most every 30 s."""
    assert reconnect_delay(failures) == delay


# -- the NOTIFY trigger ---------------------------------------------------------------------


def test_job_getting_its_flow_run_id_notifies_listeners(
    engine_env: str, db: psycopg.Connection[Any], user_id: str
) -> None:
    """Setting prefect_flow_run_id sends its value on supaflow_flow_runs once; other updates
    (and setting the same id again) send nothing."""
    from engine.db.connection import shared_store

    store = shared_store()
    add_workflow(db, "wf_notify", {"steps": []})
    job_id = store.create_job(user_id=user_id, workflow_id="wf_notify", input_data={}).id
    heard: list[str] = []
    listener = NotificationListener(engine_env, heard.append, wait_seconds=0.1)
    listener.start()
    try:
        assert listener.connected.wait(10)
        run_id = str(uuid.uuid4())
        store.set_flow_run(job_id, run_id)
        store.set_flow_run(job_id, run_id)  # unchanged: no second notification
        store.heartbeat(job_id)  # another column: nothing
        marker = str(uuid.uuid4())
        db.execute("select pg_notify('supaflow_flow_runs', %s)", [marker])
        deadline = time.monotonic() + 10
        while marker not in heard and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.stop()
    assert heard == [run_id, marker]


# -- behaviour ------------------------------------------------------------------------------


@pytest.mark.slow
def test_several_jobs_run_at_once_up_to_the_limit(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """Four jobs on a worker limited to three: three run together in one process (each of
    their requests waits until all three have arrived), never more than three, and the fourth
    starts as soon as a slot frees up (the fallback poll is 60 s away). Each job is one
    Prefect flow run, Completed, with one task run for its step."""
    together = threading.Barrier(3, timeout=60)

    def first_three_meet(number: int) -> None:
        if number <= 3:
            together.wait()  # BrokenBarrierError (a 500) unless three run at once

    slow = Scripted([200], body={"ok": True}, sleep_seconds=0.3, on_request=first_three_meet)
    http_transformer(db, "slow-api", serve(http_server, "/slow", slow))
    add_workflow(db, "wf_slow", {"steps": [{"id": "call", "transformer": "slow-api"}]})
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=3) as worker:
        job_ids = [
            flow_store.create_job(user_id=user_id, workflow_id="wf_slow", input_data={}).id
            for _ in range(4)
        ]
        run_ids = [dispatch(flow_store, deployment_id, job_id) for job_id in job_ids]
        statuses = wait_for_jobs(flow_store, job_ids)
        wait_until(lambda: worker.wakeups >= 1, 30, "a NOTIFY wake-up")
        # The job row is final before the flow run is: wait for what Prefect reports.
        for run_id in run_ids:
            wait_for_state(run_id, "COMPLETED")
            wait_for_owner(run_id, worker.infrastructure_id)
            assert wait_for_task_runs(run_id) == ["call"]
    assert set(statuses.values()) == {"completed"}, statuses
    assert len(slow.hits) == 4
    assert max_overlap(slow.hits) == 3
    started = sorted(flow_store.get_job(j)["started_at"] for j in job_ids)
    assert started[2] < min(flow_store.get_job(j)["completed_at"] for j in job_ids)


class Boom(BaseException):
    """Not an Exception: what escapes every `except Exception` (a crash, not a failure)."""


@pytest.mark.slow
def test_a_crashing_run_is_contained_and_its_job_recovers(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    http_server: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step raising a BaseException crashes its flow run (Crashed in Prefect, recorded as
    `flow_run_crashed` on the job, which stays in flight) while a job running at the same
    time in the same worker completes. Resubmitted as maintenance would (a new flow run
    for the job), the crashed job resumes and completes in the same worker."""
    calls: list[str] = []

    def crash_once(config: Any, step_input: dict[str, Any], ctx: Any) -> Any:
        calls.append(ctx.job_id)
        if len(calls) == 1:
            time.sleep(0.3)  # let the other job's request be open when this one crashes
            raise Boom("unexpected crash inside a step")
        return {"recovered": True}

    monkeypatch.setitem(registry.EXECUTORS, "test-crash-once", crash_once)
    # A json_transform config (it must validate) routed to the test executor.
    db.execute(
        "insert into public.transformers (id, type, config, target_function) values "
        "('crasher', 'json_transform', '{\"template\": {}}'::jsonb, 'test-crash-once')"
    )
    slow = Scripted([200], body={"ok": True}, sleep_seconds=1.5)
    http_transformer(db, "slow-api", serve(http_server, "/slow", slow))
    add_workflow(db, "wf_crash", {"steps": [{"id": "boom", "transformer": "crasher"}]})
    add_workflow(db, "wf_slow", {"steps": [{"id": "call", "transformer": "slow-api"}]})
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=4) as worker:
        healthy = flow_store.create_job(user_id=user_id, workflow_id="wf_slow", input_data={}).id
        crashing = flow_store.create_job(user_id=user_id, workflow_id="wf_crash", input_data={})
        dispatch(flow_store, deployment_id, healthy)
        wait_until(lambda: slow.count, 30, "the healthy job's request")
        crashed_run = dispatch(flow_store, deployment_id, crashing.id)

        crashed = wait_for_state(crashed_run, "CRASHED")
        assert crashed.state is not None and "Boom" in (crashed.state.message or "")
        assert wait_for_jobs(flow_store, [healthy]) == {healthy: "completed"}
        kinds = wait_until(
            lambda: (
                "flow_run_crashed" in (k := [e["kind"] for e in flow_store.events(crashing.id)])
                and k
            ),
            30,
            "the crash to be recorded on the job",
        )
        assert "step_failed" in kinds
        assert flow_store.get_job(crashing.id)["status"] == "running"

        # Maintenance's recovery: a new flow run for the same job (new idempotency key).
        dispatch(flow_store, deployment_id, crashing.id, key=f"{crashing.id}:1")
        assert wait_for_jobs(flow_store, [crashing.id]) == {crashing.id: "completed"}
        assert flow_store.get_job(crashing.id)["step_data"]["boom"] == {"recovered": True}
        wait_until(lambda: not worker.runs, 30, "the worker to release every run")
    assert len(slow.hits) == 1


@pytest.mark.slow
def test_notify_starts_a_job_long_before_the_next_poll(
    flow_store: JobStore,
    db: psycopg.Connection[Any],
    user_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the fallback poll 60 s away, a job dispatched after the worker's first poll
    completes within 30 s: the NOTIFY sent when the job got its flow run id woke the worker."""
    db.execute(
        "insert into public.transformers (id, type, config, target_function) values "
        "('reshape', 'json_transform', '{\"template\": {\"value.$\": \"$.input\"}}'::jsonb, "
        "'execute-json-transform')"
    )
    add_workflow(
        db,
        "wf_quick",
        {
            "steps": [
                {"id": "a", "transformer": "reshape", "input": {"x.$": "$.input.x"}},
                {"id": "b", "transformer": "reshape", "input": {"x.$": "$.steps.a.value.x"}},
            ],
            "output": {"x.$": "$.steps.b.value.x"},
        },
    )
    pool = unique_pool()
    deployment_id = deploy(pool)
    polls: list[int] = []
    poll = WarmWorker.get_and_submit_flow_runs

    async def counted_poll(self: WarmWorker) -> list[FlowRun]:
        try:
            return await poll(self)
        finally:
            polls.append(1)

    monkeypatch.setattr(WarmWorker, "get_and_submit_flow_runs", counted_poll)
    with warm_worker(pool, limit=2, query_seconds=60.0) as worker:
        # Past the worker's first polls (the regular one and the one its LISTEN connection
        # asks for): the next regular poll is 60 s away.
        wait_until(lambda: len(polls) >= 2, 30, "the worker's first polls")
        job_id = flow_store.create_job(
            user_id=user_id, workflow_id="wf_quick", input_data={"x": 7}
        ).id
        dispatch(flow_store, deployment_id, job_id)
        assert wait_for_jobs(flow_store, [job_id], timeout=30) == {job_id: "completed"}
        wait_until(lambda: worker.wakeups >= 1, 30, "a NOTIFY wake-up")
    assert flow_store.get_job(job_id)["final_result"] == {"x": 7}


@pytest.mark.slow
def test_cancelling_a_run_stops_it_before_its_next_step(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """Cancelling a flow run while its first step runs: that step finishes, the second never
    starts, the flow's on_cancellation hook fails the job as cancelled, and the flow run
    ends Cancelled."""
    run_id: list[str] = []

    def cancel_now(_number: int) -> None:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(run_id[0]), Cancelling(message="user asked"))

    first = Scripted([200], sleep_seconds=1.5, on_request=cancel_now)
    second = Scripted([200])
    http_transformer(db, "first-api", serve(http_server, "/first", first))
    http_transformer(db, "second-api", serve(http_server, "/second", second))
    add_workflow(
        db,
        "wf_two",
        {
            "steps": [
                {"id": "one", "transformer": "first-api"},
                {"id": "two", "transformer": "second-api", "depends_on": ["one"]},
            ]
        },
    )
    pool = unique_pool()
    deployment_id = deploy(pool)
    with warm_worker(pool, limit=2, cancel_poll_seconds=1.0):
        job_id = flow_store.create_job(user_id=user_id, workflow_id="wf_two", input_data={}).id
        run_id.append(dispatch(flow_store, deployment_id, job_id))
        assert wait_for_jobs(flow_store, [job_id]) == {job_id: "failed"}
        wait_for_state(run_id[0], "CANCELLED")
    row = flow_store.get_job(job_id)
    assert "cancelled" in row["error_message"]
    assert first.count == 1 and second.count == 0
    assert set(row["step_data"]) == {"one"}


@pytest.mark.slow
def test_runs_of_a_killed_worker_are_marked_crashed_by_the_next_one(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str
) -> None:
    """kill -9 of a warm worker process leaves its run Running in Prefect. The next warm
    worker on the host sees that the run's owner process is gone, marks the run Crashed and
    records `flow_run_crashed` on the job, for maintenance to resubmit."""
    delay_transformer(db, "long-pause", 60)
    add_workflow(db, "wf_long", {"steps": [{"id": "wait", "transformer": "long-pause"}]})
    pool = unique_pool()
    deployment_id = deploy(pool)
    env = {**os.environ, "PREFECT_CLIENT_MAX_RETRIES": "5"}
    doomed = subprocess.Popen(
        [sys.executable, "-m", "worker", "--pool", pool, "--limit", "2"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        job_id = flow_store.create_job(user_id=user_id, workflow_id="wf_long", input_data={}).id
        run_id = dispatch(flow_store, deployment_id, job_id)
        running = wait_until(
            lambda: (
                (r := read_flow_run(run_id)).state
                and r.state.is_running()
                and r.infrastructure_pid
                and r
            ),
            90,
            "the run to be Running in the first worker",
        )
        owner = parse_infrastructure_id(running.infrastructure_pid)
        assert owner is not None and owner.pid == doomed.pid
        # The flow run is Running before its step marks the job running: kill only once the
        # step executes (on a loaded machine the job may still be pending at this point).
        wait_until(
            lambda: flow_store.get_job(job_id)["status"] == "running",
            90,
            "the job to be running in the first worker",
        )
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(30)
    assert flow_store.get_job(job_id)["status"] == "running"

    with warm_worker(pool, limit=2, listen=False):
        crashed = wait_for_state(run_id, "CRASHED")
        assert crashed.state is not None and str(doomed.pid) in (crashed.state.message or "")
        # The job's event is written after the state is set.
        wait_until(
            lambda: job_events(flow_store, job_id, "flow_run_crashed"),
            30,
            "the crash to be recorded on the job",
        )
    events = job_events(flow_store, job_id, "flow_run_crashed")
    assert len(events) == 1 and events[0]["detail"]["flow_run_id"] == run_id
