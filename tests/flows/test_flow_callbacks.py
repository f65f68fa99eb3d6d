"""Job callbacks (on_finish) end to end: real jobs run by run_workflow on the session's Prefect
server and a real PostgreSQL, called back to a local receiver (pytest-httpserver on
127.0.0.1) that verifies the signature the way a receiver would."""

from __future__ import annotations

import contextvars
import json
import threading
from typing import Any

import psycopg
import pytest
from flow_services import (
    Scripted,
    add_workflow,
    delay_transformer,
    held_first,
    http_transformer,
    serve,
)
from prefect.exceptions import CancelledRun
from pytest_httpserver import HTTPServer
from waiting import wait_until

from engine.db import job_control
from engine.db.callbacks import CallbackStore
from engine.db.store import JobStore
from engine.definitions.callback_target import CallbackTarget
from engine.jobs.callbacks import DELIVERY_HEADER, EVENT_HEADER, resolve_target
from engine.security.signing import verify
from engine.settings import get_settings
from flows.callbacks import deliver_due
from flows.maintenance import maintenance
from flows.run_step import StepFailedError
from flows.run_workflow import run_workflow

SECRET_ENV = "SUPAFLOW_TEST_CALLBACK_SECRET"
SECRET = "receiver-shared-secret"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signing secret lives in the environment variable the definition names."""
    monkeypatch.setenv(SECRET_ENV, SECRET)


def callback_workflow(
    db: psycopg.Connection[Any], workflow_id: str, url: str, **target: Any
) -> dict[str, Any]:
    """A one-step workflow (a short delay) whose definition calls `url` back, signed."""
    delay_transformer(db, f"{workflow_id}-pause", 0.01)
    on_finish = {"url": url, "secret_env": SECRET_ENV, **target}
    definition = {"steps": [{"id": "pause", "transformer": f"{workflow_id}-pause"}]}
    add_workflow(db, workflow_id, {**definition, "on_finish": on_finish})
    return on_finish


def start(
    store: JobStore, user_id: str, workflow_id: str, defined: dict[str, Any], url: str | None = None
) -> str:
    """Record a job as POST /workflows/start does: with the resolved target stored."""
    target = resolve_target(CallbackTarget.model_validate(defined), url)
    return store.create_job(
        user_id=user_id, workflow_id=workflow_id, input_data={}, on_finish=target
    ).id


def callbacks(store: JobStore, job_id: str) -> list[dict[str, Any]]:
    """The job's outbox rows."""
    return CallbackStore(store.pool).for_job(job_id)


def settled(store: JobStore, job_id: str) -> dict[str, Any] | None:
    """The job's one callback once it is delivered or failed (else None)."""
    rows = callbacks(store, job_id)
    return rows[0] if rows and rows[0]["status"] != "pending" else None


def verified_body(hit: Any) -> dict[str, Any]:
    """The JSON body of a received callback, after checking its signature as a receiver."""
    assert verify(SECRET.encode(), hit.headers, hit.body), "signature does not verify"
    body: dict[str, Any] = json.loads(hit.body)
    return body


def test_completed_job_calls_back_once_with_a_valid_signature(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """The flow's final-state hook delivers at once: one signed POST with the job's result;
    the row says delivered (1 attempt, 200); a later maintenance pass sends nothing more."""
    receiver = Scripted([200])
    defined = callback_workflow(db, "cb_done", serve(http_server, "/done", receiver))
    job_id = start(flow_store, user_id, "cb_done", defined)

    run_workflow(job_id)

    row = wait_until(lambda: settled(flow_store, job_id), 30, "the callback to settle")
    assert row["status"] == "delivered" and row["attempts"] == 1
    assert row["response_code"] == 200 and row["delivered_at"] is not None
    (hit,) = receiver.hits
    body = verified_body(hit)
    job = flow_store.get_job(job_id)
    assert body == {
        "job_id": job_id,
        "workflow_id": "cb_done",
        "workflow_version": 1,
        "status": "completed",
        "finished_at": job["completed_at"].isoformat(),
        "final_result": job["final_result"],
    }
    assert hit.headers[DELIVERY_HEADER.lower()] == f"callback-{job_id}-1"
    assert hit.headers[EVENT_HEADER.lower()] == "job.completed"

    deliver_due(flow_store, get_settings())
    assert receiver.count == 1 and len(callbacks(flow_store, job_id)) == 1


def test_failed_job_calls_back_with_the_error(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A job failing on a client error is called back with status failed, its error message
    and its error kind."""
    receiver = Scripted([200])
    http_transformer(db, "cb-strict", serve(http_server, "/strict", Scripted([400])))
    defined = {"url": serve(http_server, "/failed", receiver), "secret_env": SECRET_ENV}
    add_workflow(
        db,
        "cb_fail",
        {"steps": [{"id": "submit", "transformer": "cb-strict"}], "on_finish": defined},
    )
    job_id = start(flow_store, user_id, "cb_fail", defined)

    with pytest.raises(StepFailedError):
        run_workflow(job_id)

    wait_until(lambda: settled(flow_store, job_id), 30, "the callback to settle")
    (hit,) = receiver.hits
    body = verified_body(hit)
    job = flow_store.get_job(job_id)
    assert body["status"] == "failed" and body["error_kind"] == "client_error"
    assert body["error"] == job["error_message"] and "'submit'" in body["error"]
    assert "final_result" not in body
    assert hit.headers[EVENT_HEADER.lower()] == "job.failed"


def _deliver_until_settled(store: JobStore, job_id: str, timeout: float) -> dict[str, Any]:
    """Run delivery passes (what each maintenance pass does) until the callback settles."""

    def check() -> dict[str, Any] | None:
        deliver_due(store, get_settings())
        return settled(store, job_id)

    result: dict[str, Any] = wait_until(check, timeout, "the callback to settle")
    return result


def test_two_errors_then_success_is_three_attempts_with_backoff(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A receiver answering 500, 500, 200: three attempts, each after the backoff (1 s, then
    2 s), all with the same delivery id and a valid signature; the row ends delivered."""
    receiver = Scripted([500, 500, 200])
    url = serve(http_server, "/flaky", receiver)
    defined = callback_workflow(db, "cb_flaky", url, max_attempts=5, retry_delay_seconds=1)
    job_id = start(flow_store, user_id, "cb_flaky", defined)

    run_workflow(job_id)
    row = _deliver_until_settled(flow_store, job_id, 30)

    assert row["status"] == "delivered" and row["attempts"] == 3 and row["last_error"] is None
    assert receiver.count == 3
    gaps = [b.entered - a.entered for a, b in zip(receiver.hits, receiver.hits[1:], strict=False)]
    assert gaps[0] >= 1.0 and gaps[1] >= 2.0, gaps
    assert {h.headers[DELIVERY_HEADER.lower()] for h in receiver.hits} == {f"callback-{job_id}-1"}
    for hit in receiver.hits:
        verified_body(hit)


def test_a_receiver_always_failing_ends_failed_after_max_attempts(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """Always 500 with max_attempts 2: two attempts, then failed with the status as the error;
    later passes send nothing more."""
    receiver = Scripted([500])
    url = serve(http_server, "/down", receiver)
    defined = callback_workflow(db, "cb_down", url, max_attempts=2, retry_delay_seconds=1)
    job_id = start(flow_store, user_id, "cb_down", defined)

    run_workflow(job_id)
    row = _deliver_until_settled(flow_store, job_id, 30)

    assert row["status"] == "failed" and row["attempts"] == 2
    assert row["last_error"] == "receiver answered HTTP 500" and row["response_code"] == 500
    deliver_due(flow_store, get_settings())
    assert receiver.count == 2


def test_the_per_job_target_overrides_the_definitions(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A job started with its own URL is called back there (signed with the definition's
    secret), and the definition's receiver gets nothing."""
    theirs, mine = Scripted([200]), Scripted([200])
    defined = callback_workflow(db, "cb_override", serve(http_server, "/theirs", theirs))
    job_id = start(flow_store, user_id, "cb_override", defined, serve(http_server, "/mine", mine))

    run_workflow(job_id)

    wait_until(lambda: settled(flow_store, job_id), 30, "the callback to settle")
    assert theirs.count == 0 and mine.count == 1
    assert verified_body(mine.hits[0])["job_id"] == job_id


@pytest.mark.parametrize(
    ("url", "error"),
    [
        # Refused by the SSRF guard at delivery (as if DNS had changed since the start).
        ("http://10.255.255.1/cb", "address not allowed: 10.255.255.1"),
        # Allow-listed but closed: the transport's own message (with the address) stays out.
        ("http://127.0.0.1:9/cb", "could not connect"),
        ("http://no-such-host.invalid/cb", "host not found"),
    ],
)
def test_an_unreachable_receiver_is_stored_without_internal_details(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, url: str, error: str
) -> None:
    """A delivery that cannot reach its receiver ends (max_attempts 1) with an error that
    names at most the host as given, never an address it resolved to or a socket error."""
    defined = callback_workflow(db, "cb_unreachable", url, max_attempts=1)
    job_id = start(flow_store, user_id, "cb_unreachable", defined)

    run_workflow(job_id)

    row = wait_until(lambda: settled(flow_store, job_id), 30, "the callback to settle")
    assert row["status"] == "failed" and row["attempts"] == 1
    assert row["last_error"] == error and row["response_code"] is None


def test_two_maintenance_passes_at_once_deliver_once(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """Callbacks owed by five jobs (their flow's own attempt did not happen) and two real
    maintenance passes started together: every callback is sent exactly once."""
    receiver = Scripted([200], sleep_seconds=0.3)
    defined = callback_workflow(db, "cb_race", serve(http_server, "/race", receiver))
    jobs = [start(flow_store, user_id, "cb_race", defined) for _ in range(5)]
    # Ended by another path (as a cancel or maintenance's give-up ends a job): no flow hook ran.
    db.execute(
        "update public.jobs set status = 'failed', error_message = 'stopped' where id = any(%s)",
        [jobs],
    )
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def one_pass() -> None:
        barrier.wait()
        results.append(maintenance(grace_seconds=3600)["callbacks"])

    # Each thread runs in a copy of this context: the client-retry setting carries over.
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(one_pass,)) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert len(results) == 2 and sum(r["delivered"] for r in results) == 5, results
    assert receiver.count == 5
    delivered = {json.loads(h.body)["job_id"] for h in receiver.hits}
    assert delivered == set(jobs)
    assert all(callbacks(flow_store, j)[0]["status"] == "delivered" for j in jobs)


def _owed(store: JobStore, db: psycopg.Connection[Any], user_id: str, url: str) -> str:
    """A job ended outside its flow (no hook ran), so its callback is owed and due."""
    defined = callback_workflow(db, "cb_owed", url)
    job_id = start(store, user_id, "cb_owed", defined)
    db.execute("update public.jobs set status = 'completed' where id = %s", [job_id])
    return job_id


def test_a_pass_during_another_pass_attempt_sends_nothing(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """While one pass's POST is in flight (the receiver runs a whole second pass before it
    answers), the second pass finds the claimed callback leased and sends nothing."""
    second: list[Any] = []
    receiver = Scripted(
        [200], on_request=lambda n: second.append(deliver_due(flow_store, get_settings()))
    )
    job_id = _owed(flow_store, db, user_id, serve(http_server, "/inflight", receiver))

    first = deliver_due(flow_store, get_settings())

    assert len(first.delivered) == 1 and receiver.count == 1
    assert second[0].as_dict() == {"delivered": 0, "retrying": 0, "failed": 0}
    assert callbacks(flow_store, job_id)[0]["attempts"] == 1


def test_a_row_locked_by_another_pass_is_skipped_not_waited_for(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """A pass whose claim meets a row another transaction holds locked skips it at once
    (FOR UPDATE SKIP LOCKED), and takes it once the lock is gone."""
    receiver = Scripted([200])
    job_id = _owed(flow_store, db, user_id, serve(http_server, "/locked", receiver))
    with psycopg.connect(db.info.dsn) as other:
        other.execute("select 1 from public.job_callbacks where job_id = %s for update", [job_id])
        skipped = deliver_due(flow_store, get_settings())
    assert skipped.as_dict()["delivered"] == 0 and receiver.count == 0
    assert len(deliver_due(flow_store, get_settings()).delivered) == 1 and receiver.count == 1


def test_a_cancel_and_a_rerun_each_call_back_once(
    flow_store: JobStore, db: psycopg.Connection[Any], user_id: str, http_server: HTTPServer
) -> None:
    """The owner cancels mid-step: the job stops at the step boundary and is called back
    failed with error_kind cancelled; rerun, it completes and is called back again (a second
    callback, the job's second end)."""
    receiver = Scripted([200])
    held, release = held_first()
    http_transformer(db, "cb-held", serve(http_server, "/held", held))
    delay_transformer(db, "cb-after", 0.01)
    defined = {"url": serve(http_server, "/cancel", receiver), "secret_env": SECRET_ENV}
    steps = [{"id": "held", "transformer": "cb-held"}, {"id": "after", "transformer": "cb-after"}]
    add_workflow(db, "cb_cancel", {"steps": steps, "on_finish": defined})
    job_id = start(flow_store, user_id, "cb_cancel", defined)

    ended: list[str] = []

    def run() -> None:
        try:
            run_workflow(job_id)
        except CancelledRun:  # the flow run ends Cancelled, which raises for a direct call
            ended.append("cancelled")

    runner = threading.Thread(target=contextvars.copy_context().run, args=(run,))
    runner.start()
    wait_until(lambda: held.count == 1, 60, "the held step to be called")
    job_control.cancel_job(flow_store, job_id, user_id)
    release.set()
    runner.join(120)
    assert ended == ["cancelled"]

    first = wait_until(lambda: settled(flow_store, job_id), 30, "the cancel's callback")
    assert first["status"] == "delivered" and first["error_kind"] == "cancelled"
    body = verified_body(receiver.hits[0])
    assert body["status"] == "failed" and body["error_kind"] == "cancelled"

    rerun = job_control.rerun_job(flow_store, job_id, user_id)
    run_workflow(job_id)

    rows = wait_until(
        lambda: (
            [r for r in callbacks(flow_store, job_id) if r["status"] == "delivered"][1:]
            and callbacks(flow_store, job_id)
        ),
        30,
        "the rerun's callback",
    )
    assert rerun.retry_count == 1
    assert [(r["end_number"], r["job_status"]) for r in rows] == [(1, "failed"), (2, "completed")]
    assert receiver.count == 2 and verified_body(receiver.hits[1])["status"] == "completed"
