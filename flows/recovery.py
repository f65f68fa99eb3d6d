"""Crash recovery: find in-flight jobs whose flow run stopped, resubmit or fail them."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed, Scheduled

from engine.db.store import JobStore, Transition
from engine.dispatch import RunStarter
from engine.jobs.recovery import ACTIVE_STATES, Action, Candidate, Decision, decide
from engine.jobs.transitions import JobStatus
from engine.settings import Settings


@dataclass
class RecoveryOutcome:
    """What one recovery pass decided, by job id."""

    resubmitted: dict[str, str] = field(default_factory=dict)  # job id -> new flow run id
    failed: dict[str, str] = field(default_factory=dict)  # job id -> reason
    left: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the flow's return value and logs."""
        return {
            "resubmitted": self.resubmitted,
            "failed": self.failed,
            "left": self.left,
            "errors": self.errors,
        }


def _flow_run_state(
    client: SyncPrefectClient, flow_run_id: Any
) -> tuple[bool, str | None, float | None]:
    """Whether Prefect knows the run, its state type, and seconds since it entered it."""
    if flow_run_id is None:
        # Run in-process without a deployment: only the heartbeat tells whether it lives.
        return True, "RUNNING", None
    try:
        run = client.read_flow_run(UUID(str(flow_run_id)))
    except ObjectNotFound:
        return False, None, None
    if run.state is None:
        return True, None, None
    since = (datetime.now(UTC) - run.state.timestamp).total_seconds()
    return True, run.state.type.value, since


def recover_jobs(
    store: JobStore,
    settings: Settings,
    *,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger],
    limit: int = 100,
    starter: RunStarter | None = None,
) -> RecoveryOutcome:
    """One pass: resubmit jobs whose flow run crashed, was cancelled by infrastructure, was
    lost or went silent; fail those already resubmitted `max_retries` times.

    Every job is handled inside one transaction holding its row lock (SKIP LOCKED), so a
    concurrent maintenance run skips it; the new flow run id fences out the old run.
    `starter` shares the caller's Prefect client; without one, the pass opens its own.
    """
    outcome = RecoveryOutcome()
    with ExitStack() as stack:
        if starter is None:
            client = stack.enter_context(get_client(sync_client=True))
            starter = RunStarter(client, settings.prefect_deployment)
        client = starter.client
        conn, rows = stack.enter_context(
            store.locked_in_flight(grace_seconds=settings.heartbeat_window_seconds, limit=limit)
        )
        for row in rows:
            job_id = str(row["id"])
            found, state, in_state_seconds = _flow_run_state(client, row["prefect_flow_run_id"])
            silence = float(row["heartbeat_age_seconds"] or 0)
            if in_state_seconds is not None:
                # A run that a worker took (PENDING) or that started (RUNNING) a moment ago
                # has not been silent longer than that, however long ago the job row last
                # changed (a job that queued, or whose process is still starting, is not dead).
                silence = min(silence, max(in_state_seconds, 0.0))
            decision: Decision = decide(
                Candidate(
                    job_id=job_id,
                    status=row["status"],
                    flow_run_found=found,
                    flow_run_state=state,
                    heartbeat_age_seconds=silence,
                    resubmissions=int(row["resubmissions"]),
                    max_retries=int(row["max_retries"] if row["max_retries"] is not None else 3),
                ),
                heartbeat_window_seconds=settings.heartbeat_window_seconds,
                backoff_base_seconds=settings.resubmit_backoff_seconds,
            )
            extra = {"job_id": job_id, "decision": f"recovery_{decision.action.value}"}
            if decision.action is Action.LEAVE:
                outcome.left += 1
                continue
            if decision.action is Action.GIVE_UP:
                store.transition(
                    job_id,
                    Transition(
                        status=JobStatus.FAILED,
                        error_message=f"job abandoned: {decision.reason}",
                        detail={"kind": "crashed", "decision": "give_up"},
                    ),
                    conn=conn,
                )
                outcome.failed[job_id] = decision.reason
                log.error("recovery: job failed: %s", decision.reason, extra=extra)
                continue
            try:
                if found and state in ACTIVE_STATES and row["prefect_flow_run_id"] is not None:
                    # Silent but not ended: end it in Prefect too, so the UI tells the truth.
                    client.set_flow_run_state(
                        UUID(str(row["prefect_flow_run_id"])),
                        Crashed(message=f"supaflow maintenance: {decision.reason}"),
                        force=True,
                    )
                number = int(row["resubmissions"]) + 1
                new_run = starter.create(
                    job_id,
                    idempotency_key=f"{job_id}:resubmission:{number}",
                    state=Scheduled(
                        scheduled_time=datetime.now(UTC) + timedelta(seconds=decision.delay_seconds)
                    ),
                )
            except Exception as exc:  # Prefect unreachable: try again next pass
                outcome.errors[job_id] = f"{type(exc).__name__}: {exc}"
                log.warning("recovery: could not resubmit: %s", exc, extra=extra)
                continue
            store.record_resubmission(conn, job_id, str(new_run.id))
            store.transition(
                job_id,
                Transition(
                    status=JobStatus.PENDING,
                    error_message=None,
                    detail={
                        "decision": "resubmit",
                        "reason": decision.reason,
                        "resubmission": number,
                        "flow_run_id": str(new_run.id),
                        "delay_seconds": decision.delay_seconds,
                    },
                ),
                conn=conn,
            )
            outcome.resubmitted[job_id] = str(new_run.id)
            log.warning(
                "recovery: job resubmitted (%s) as flow run %s in %.0f s",
                decision.reason,
                new_run.id,
                decision.delay_seconds,
                extra={**extra, "dispatched_flow_run_id": str(new_run.id)},
            )
    return outcome
