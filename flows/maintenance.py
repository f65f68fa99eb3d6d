"""The maintenance flow, on a Prefect schedule: the engine's periodic tick.

Each pass:
0. fails every unfinished job past its deadline (the workflow's `timeout_seconds`) with error
   kind `timeout` and stops its flow run (flows/job_deadlines.py), before anything could
   dispatch or resubmit it;
1. dispatches `pending` jobs that never reached Prefect (the API could not create their flow
   run: Prefect down, API restarted mid-request), reruns too (each with its rerun's key);
2. recovers in-flight jobs whose flow run crashed, was cancelled by infrastructure, was lost
   or stopped beating: resubmitted with backoff (they resume at their first unfinished step),
   or failed once resubmitted `max_retries` times;
3. acts on wait steps: approvals and events past their deadline (decided by on_timeout, or
   the job failed), and decided waits whose flow run was not resumed (flows/wait_deadlines.py);
   sub-workflow waits whose child ended unseen are decided and their parents resumed, and
   children whose parent no longer waits for them are cancelled (flows/sub_workflows.py);
4. evaluates, stores and delivers alerts;
5. delivers the job callbacks (`on_finish`) that are due: retries, and first attempts the
   flow did not make;
6. makes Prefect's schedules match the schedules rows (flows/schedule_sync_pass.py), then
   makes each schedule's latest due firing that no run made (flows/schedule_backfill.py).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client

from engine.db.connection import shared_store
from engine.dispatch import RunStarter
from engine.settings import get_settings
from flows.alerting import run_alerting
from flows.callbacks import run_callbacks
from flows.job_control import dispatch_reruns
from flows.job_deadlines import run_job_deadlines
from flows.recovery import recover_jobs
from flows.schedule_backfill import run_schedule_backfill
from flows.schedule_sync_pass import run_schedule_sync
from flows.sub_workflows import run_sub_workflows
from flows.wait_deadlines import run_wait_deadlines


@flow(name="maintenance", persist_result=False)
def maintenance(grace_seconds: float | None = None, limit: int = 100) -> dict[str, Any]:
    """One maintenance pass; returns what it did (each decision is also logged)."""
    started = time.perf_counter()
    settings = get_settings()
    store = shared_store(settings)
    logger = get_run_logger()
    grace = settings.dispatch_grace_seconds if grace_seconds is None else grace_seconds
    with get_client(sync_client=True) as client:
        starter = RunStarter(client, settings.prefect_deployment)
        timed_out = run_job_deadlines(store, starter, log=logger, limit=limit).as_dict()
        outcomes = store.dispatch_pending(starter.try_start, grace_seconds=grace, limit=limit)
        outcomes += dispatch_reruns(store, starter, grace_seconds=grace, limit=limit)
        recovery = recover_jobs(store, settings, log=logger, limit=limit, starter=starter)
        deadlines = run_wait_deadlines(
            store, starter, grace_seconds=grace, log=logger, limit=limit
        ).as_dict()
        children = run_sub_workflows(store, starter, log=logger, limit=limit)
        schedules = run_schedule_sync(store, settings, client, log=logger)
        schedules["backfill"] = run_schedule_backfill(store, settings, log=logger)
    dispatched = [job for job, run in outcomes if run is not None]
    waiting = [job for job, run in outcomes if run is None]
    for job_id, run_id in outcomes:
        logger.info(
            "dispatch decision: %s",
            "flow run created" if run_id else "Prefect unreachable, job stays pending",
            extra={"job_id": job_id, "dispatched_flow_run_id": run_id, "decision": "dispatch"},
        )
    try:
        alerting = run_alerting(
            store, settings, maintenance_seconds=time.perf_counter() - started, log=logger
        ).as_dict()
    except Exception:
        logger.exception("alert evaluation failed", extra={"decision": "alerting"})
        alerting = {"error": True}
    callbacks = run_callbacks(store, settings, limit=limit, log=logger)
    return {
        "callbacks": callbacks,
        "job_deadlines": timed_out,
        "dispatched": dispatched,
        "still_pending": waiting,
        "recovery": recovery.as_dict(),
        "waits": deadlines,
        "sub_workflows": children,
        "schedules": schedules,
        "alerts": alerting,
    }
