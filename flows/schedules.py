"""The fire-schedule flow: one firing of a recurring schedule creates exactly one job.

Every row of public.schedules is one schedule of a single deployment of this flow (the
`fire-schedule` deployment, on the warm worker's pool; worker/schedule_deployment.py), with
its own parameters `{"schedule_id": <row id>}`. Prefect's scheduler creates the flow runs
ahead of time, each Scheduled for one firing; a worker runs each when it is due. A run:

1. reads its own scheduled time (the flow run's expected start time) and the schedule row;
2. decides whether the firing fires (engine.jobs.schedule_firing.decide), the catch-up policy:
   - a firing at most SCHEDULE_MISFIRE_GRACE_SECONDS late (default 300) fires;
   - a later one (everything was down, the run is Late) is missed: no job, counted `missed`;
     except that with the row's `catch_up` = `latest` (the default) the schedule's latest due
     firing (its next firing time still ahead) fires, once; with `catch_up` = `none` every
     firing past the grace is missed;
   - a paused (active false) or deleted schedule, or one whose workflow is disabled, fires
     nothing (counted `inactive`);
3. creates the job through the API's job insert with the idempotency key
   `schedule:<schedule id>:<scheduled time, ISO 8601 UTC>`, owned by the row's user (null:
   an operator schedule), with the row's input_data, pinned version (none: the workflow's
   default) and the workflow's on_finish callback, and starts its run-workflow flow run as
   the API's dispatcher does (Prefect refusing leaves the job pending for the maintenance
   dispatch);
4. records the firing on the row (last_fired_for, last_job_id) and counts it `created`, or
   `duplicate` when the same firing ran before (Prefect firing twice, two schedulers, a
   restarted run): that finds the same job and starts nothing new.

When the job ends, the trigger jobs_schedule_outcome writes the row's last_status and
consecutive_failures (migration 20261207001100).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run as flow_run_runtime

from engine.db.connection import shared_store
from engine.db.schedule_firings import ScheduleFirings
from engine.db.store import JobStore
from engine.definitions.callback_target import CallbackTarget
from engine.dispatch import RunStarter
from engine.errors import NotFoundError
from engine.jobs.callbacks import resolve_target
from engine.jobs.schedule_firing import Decision, Firing, decide, firing_time_text
from engine.schedule_rules import Rule, next_run_after
from engine.settings import get_settings

logger = logging.getLogger("supaflow.schedules")

FIRE_SCHEDULE_FLOW = "fire-schedule"

_STARTERS: dict[str, RunStarter] = {}
_STARTERS_LOCK = threading.Lock()


def _starter(deployment_name: str) -> RunStarter:
    """One run starter per deployment in this process (its client opened on first use)."""
    with _STARTERS_LOCK:
        if deployment_name not in _STARTERS:
            _STARTERS[deployment_name] = RunStarter.own_client(deployment_name)
        return _STARTERS[deployment_name]


def scheduled_time() -> datetime:
    """This flow run's scheduled time, in UTC (its expected start time; now when the flow is
    called outside a flow run)."""
    moment: datetime = flow_run_runtime.scheduled_start_time
    return moment.astimezone(UTC)


def next_firing_after(row: Mapping[str, Any], after: datetime) -> datetime | None:
    """The schedule's next firing after `after`, as Prefect's scheduler computes it from the
    row's rule (None: the rule fires no more, or the row's rule does not parse)."""
    try:
        return next_run_after(Rule.from_row(row), after)
    except Exception as exc:
        logger.warning("could not compute the schedule's next firing: %s", exc)
        return None


def _workflow_terms(store: JobStore, row: Mapping[str, Any]) -> tuple[bool, Any]:
    """(whether the schedule's workflow is enabled, the job's on_finish target): a disabled
    workflow takes no new jobs, as at POST /workflows/start; the definition's on_finish
    applies to a scheduled job as to a start that names none."""
    try:
        workflow = store.get_workflow(row["workflow_id"], row["workflow_version"])
    except NotFoundError:
        return False, None
    raw = (workflow["definition"] or {}).get("on_finish")
    defined = CallbackTarget.model_validate(raw) if raw else None
    return bool(workflow["enabled"]), resolve_target(defined, None)


def fire(
    schedule_id: str,
    scheduled_for: datetime,
    *,
    now: datetime | None = None,
    backfill: bool = False,
) -> dict[str, Any]:
    """One firing of the schedule for `scheduled_for` (steps 2 to 4 of the module docstring);
    what it did: outcome, job_id (when it has a job), scheduled_for, lateness_seconds.

    `backfill`: the maintenance pass makes a firing whose own run never made its job
    (flows/schedule_backfill.py); a job it creates counts `backfilled`, and a firing that
    creates none counts nothing (the pass looks again next time)."""
    settings = get_settings()
    firings = ScheduleFirings(shared_store(settings))
    moment = now or datetime.now(UTC)
    row = firings.schedule(schedule_id)
    firing = Firing(
        scheduled_for=scheduled_for,
        now=moment,
        active=bool(row and row["active"]),
        catch_up=str(row["catch_up"]) if row else "latest",
        grace_seconds=settings.schedule_misfire_grace_seconds,
    )
    if row is not None and firing.lateness_seconds > firing.grace_seconds:
        # Only a late firing needs to know whether a later one is already due.
        firing = replace(firing, next_after=next_firing_after(row, scheduled_for))
    outcome: dict[str, Any] = {
        "schedule_id": schedule_id,
        "scheduled_for": firing_time_text(scheduled_for),
        "lateness_seconds": round(firing.lateness_seconds, 3),
    }
    decision = decide(firing)
    if decision is not Decision.FIRE or row is None:
        if not backfill:
            firings.count(decision.value)
        return {**outcome, "outcome": decision.value, "job_id": None}
    enabled, on_finish = _workflow_terms(firings.store, row)
    if not enabled:
        logger.warning("schedule %s: its workflow is disabled, no job", schedule_id)
        if not backfill:
            firings.count(Decision.INACTIVE.value)
        return {**outcome, "outcome": Decision.INACTIVE.value, "job_id": None}
    job = firings.create_job(row, scheduled_for, on_finish)
    if job.created:
        run = _starter(settings.prefect_deployment).try_start(job.id)
        if run is not None:
            # Unless the admission dispatcher recorded it first (same run: its key is the job).
            firings.store._fetchone("child_set_flow_run", {"job_id": job.id, "flow_run_id": run})
    created_as = "backfilled" if backfill else "created"
    firings.fired(schedule_id, scheduled_for, job, created_as)
    return {**outcome, "outcome": created_as if job.created else "duplicate", "job_id": job.id}


@flow(name=FIRE_SCHEDULE_FLOW, persist_result=False, log_prints=False)
def fire_schedule(schedule_id: str) -> dict[str, Any]:
    """Fire the schedule `schedule_id` for this flow run's scheduled time: at most one job per
    (schedule, scheduled time), whatever the number of runs for that time."""
    result = fire(schedule_id, scheduled_time())
    get_run_logger().info(
        "schedule firing: %s",
        result["outcome"],
        extra={**result, "decision": "schedule_firing"},
    )
    return result
