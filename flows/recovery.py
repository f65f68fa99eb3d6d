"""Crash recovery: find in-flight jobs whose flow run stopped, resubmit or fail them."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed, Scheduled

from engine.db.job_writes import Transition
from engine.db.rows import InFlightJob, Row
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.jobs.recovery import (
    ACTIVE_STATES,
    ENDED_STATES,
    Action,
    Candidate,
    Decision,
    decide,
)
from engine.jobs.transitions import JobStatus
from engine.settings import Settings
from flows.job_control import cancel_stopped_job


@dataclass
class RecoveryOutcome:
    """What one recovery pass decided, by job id."""

    resubmitted: dict[str, str] = field(default_factory=dict)  # job id -> new flow run id
    failed: dict[str, str] = field(default_factory=dict)  # job id -> reason
    cancelled: dict[str, str] = field(default_factory=dict)  # job id -> reason (cancel asked)
    left: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the flow's return value and logs."""
        return asdict(self)


def _flow_run_state(
    client: SyncPrefectClient, flow_run_id: str | None
) -> tuple[bool, str | None, float | None]:
    """Whether Prefect knows the run, its state type, and seconds since it entered it."""
    if flow_run_id is None:
        # Run in-process without a deployment: only the heartbeat tells whether it lives.
        return True, "RUNNING", None
    try:
        run = client.read_flow_run(UUID(flow_run_id))
    except ObjectNotFound:
        return False, None, None
    if run.state is None:
        return True, None, None
    since = (datetime.now(UTC) - run.state.timestamp).total_seconds()
    return True, run.state.type.value, since


@dataclass(frozen=True)
class _Observed:
    """What Prefect says about an in-flight job's flow run, and how long the job was silent."""

    found: bool
    state: str | None
    silence_seconds: float


def _observe(client: SyncPrefectClient, job: InFlightJob) -> _Observed:
    found, state, in_state_seconds = _flow_run_state(client, job.flow_run_id)
    silence = job.heartbeat_age_seconds
    if in_state_seconds is not None:
        # A run that a worker took (PENDING) or that started (RUNNING) a moment ago
        # has not been silent longer than that, however long ago the job row last
        # changed (a job that queued, or whose process is still starting, is not dead).
        silence = min(silence, max(in_state_seconds, 0.0))
    return _Observed(found, state, silence)


@dataclass
class _RecoveryPass:
    """One pass over the locked in-flight jobs, on the transaction holding their locks."""

    store: JobStore
    conn: psycopg.Connection[Row]
    starter: RunStarter
    client: SyncPrefectClient
    settings: Settings
    log: logging.Logger | logging.LoggerAdapter[logging.Logger]
    outcome: RecoveryOutcome

    def handle(self, job: InFlightJob) -> None:
        """Leave the job, fail it, or resubmit it, as `decide` says."""
        seen = _observe(self.client, job)
        decision = decide(
            Candidate(
                job_id=job.id,
                status=job.status,
                flow_run_found=seen.found,
                flow_run_state=seen.state,
                heartbeat_age_seconds=seen.silence_seconds,
                resubmissions=job.resubmissions,
                max_retries=job.max_retries,
                cancel_requested=job.cancel_requested,
            ),
            heartbeat_window_seconds=self.settings.heartbeat_window_seconds,
            backoff_base_seconds=self.settings.resubmit_backoff_seconds,
        )
        extra = {"job_id": job.id, "decision": f"recovery_{decision.action.value}"}
        if decision.action is Action.LEAVE:
            self.outcome.left += 1
        elif decision.action is Action.GIVE_UP:
            self._give_up(job, decision, extra)
        elif decision.action is Action.CANCEL:
            self._cancel(job, seen, decision, extra)
        else:
            self._resubmit(job, seen, decision, extra)

    def _give_up(self, job: InFlightJob, decision: Decision, extra: dict[str, Any]) -> None:
        self.store.transition(
            job.id,
            Transition(
                status=JobStatus.FAILED,
                error_message=f"job abandoned: {decision.reason}",
                detail={"kind": "crashed", "decision": "give_up"},
            ),
            conn=self.conn,
        )
        self.outcome.failed[job.id] = decision.reason
        self.log.error("recovery: job failed: %s", decision.reason, extra=extra)

    def _cancel(
        self, job: InFlightJob, seen: _Observed, decision: Decision, extra: dict[str, Any]
    ) -> None:
        open_run = seen.found and seen.state not in ENDED_STATES
        try:
            cancel_stopped_job(
                self.store,
                self.conn,
                self.client,
                job.id,
                (job.flow_run_id, open_run),
                decision.reason,
            )
        except Exception as exc:  # Prefect unreachable: try again next pass
            self.outcome.errors[job.id] = f"{type(exc).__name__}: {exc}"
            self.log.warning("recovery: could not cancel: %s", exc, extra=extra)
            return
        self.outcome.cancelled[job.id] = decision.reason
        self.log.warning("recovery: job cancelled: %s", decision.reason, extra=extra)

    def _start_again(self, job: InFlightJob, seen: _Observed, decision: Decision) -> FlowRun:
        """End the old run in Prefect if it still looks active; create the next one."""
        if seen.found and seen.state in ACTIVE_STATES and job.flow_run_id is not None:
            # Silent but not ended: end it in Prefect too, so the UI tells the truth.
            self.client.set_flow_run_state(
                UUID(job.flow_run_id),
                Crashed(message=f"supaflow maintenance: {decision.reason}"),
                force=True,
            )
        at = datetime.now(UTC) + timedelta(seconds=decision.delay_seconds)
        if job.scheduled_for is not None:
            # A delayed job whose run a worker took early and lost: still not before its time.
            at = max(at, job.scheduled_for)
        return self.starter.create(
            job.id,
            idempotency_key=f"{job.id}:resubmission:{job.resubmissions + 1}",
            state=Scheduled(scheduled_time=at),
        )

    def _resubmit(
        self, job: InFlightJob, seen: _Observed, decision: Decision, extra: dict[str, Any]
    ) -> None:
        try:
            new_run = self._start_again(job, seen, decision)
        except Exception as exc:  # Prefect unreachable: try again next pass
            self.outcome.errors[job.id] = f"{type(exc).__name__}: {exc}"
            self.log.warning("recovery: could not resubmit: %s", exc, extra=extra)
            return
        self.store.record_resubmission(self.conn, job.id, str(new_run.id))
        self.store.transition(
            job.id,
            Transition(
                status=JobStatus.PENDING,
                error_message=None,
                detail={
                    "decision": "resubmit",
                    "reason": decision.reason,
                    "resubmission": job.resubmissions + 1,
                    "flow_run_id": str(new_run.id),
                    "delay_seconds": decision.delay_seconds,
                },
            ),
            conn=self.conn,
        )
        self.outcome.resubmitted[job.id] = str(new_run.id)
        self.log.warning(
            "recovery: job resubmitted (%s) as flow run %s in %.0f s",
            decision.reason,
            new_run.id,
            decision.delay_seconds,
            extra={**extra, "dispatched_flow_run_id": str(new_run.id)},
        )


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
            own = stack.enter_context(get_client(sync_client=True))
            starter = RunStarter(own, settings.prefect_deployment)
        client = starter.client
        conn, jobs = stack.enter_context(
            store.locked_in_flight(grace_seconds=settings.heartbeat_window_seconds, limit=limit)
        )
        recovery = _RecoveryPass(store, conn, starter, client, settings, log, outcome)
        for job in jobs:
            recovery.handle(job)
    return outcome
