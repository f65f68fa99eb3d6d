"""The maintenance pass over wait steps: deadlines that passed, and decisions not resumed.

Runs in the maintenance flow, so it acts with no worker up:
- an approval past its deadline is decided by its `on_timeout` (approve or reject, with
  `decided_by` null and reason `timeout`) and its flow run resumed; `on_timeout: fail`, and
  every event wait past its timeout, fails the job (error kind `timeout`, naming the step)
  and sets its flow run Failed;
- a decided wait that no flow run took up within `grace_seconds` (the resume failed:
  Prefect was down when the decision came) has its flow run resumed again.

Sleeps are not here: a sleeping flow run is Scheduled, so Prefect runs it when it is due (or
late, when no worker is up then). Database changes commit first, Prefect is called after.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.db.job_writes import Transition
from engine.db.rows import Row
from engine.db.store import JobStore
from engine.db.waits import WaitStore
from engine.dispatch import RunStarter
from engine.jobs import waits
from engine.jobs.transitions import JobStatus
from engine.jobs.wait_fields import spec_of

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass
class DeadlineOutcome:
    """What one pass did, by wait id."""

    decided: dict[str, str] = field(default_factory=dict)  # wait id -> approve | reject
    failed: dict[str, str] = field(default_factory=dict)  # wait id -> job id
    resumed: list[str] = field(default_factory=list)  # flow run ids resumed
    errors: list[str] = field(default_factory=list)  # flow run ids Prefect did not take

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the maintenance flow's return value."""
        return asdict(self)


def timeout_message(wait: Row) -> str:
    """The failed job's error_message: which step's wait passed which deadline."""
    return (
        f"step '{wait['step_id']}' timed out: its {wait['kind']} wait passed its deadline "
        f"({wait['deadline'].isoformat()})"
    )


def _decide_by_timeout(
    wait_store: WaitStore, conn: Any, wait: Row, decision: waits.Decision
) -> str | None:
    now = datetime.now(UTC)
    output = waits.approval_output(
        decision, comment=None, form=None, decided_by=None, decided_at=now
    )
    change = {"decision": decision, "output": output, "decided_at": now, "reason": "timeout"}
    return wait_store.decide_on(conn, wait, change)


def _fail_job(store: JobStore, wait_store: WaitStore, conn: Any, wait: Row) -> str:
    message = timeout_message(wait)
    wait_store.expire(conn, wait, message)
    store.transition(
        str(wait["job_id"]),
        Transition(
            status=JobStatus.FAILED,
            step_id=wait["step_id"],
            error_message=message,
            detail={"kind": "timeout", "wait_kind": wait["kind"]},
        ),
        conn=conn,
    )
    return message


def _act_on_due(
    store: JobStore, limit: int, outcome: DeadlineOutcome, log: Log
) -> tuple[set[str], dict[str, str]]:
    """Decide or fail every due wait in one transaction; the runs to resume and to fail."""
    wait_store = WaitStore(store)
    resume: set[str] = set()
    fail: dict[str, str] = {}
    with wait_store.locked_due(limit) as (conn, due):
        for wait in due:
            wait_id, run = str(wait["id"]), wait["prefect_flow_run_id"]
            what = waits.timeout_outcome(spec_of(wait["kind"], wait["spec"]))
            extra = {"job_id": str(wait["job_id"]), "step_id": wait["step_id"]}
            if what == "fail":
                message = _fail_job(store, wait_store, conn, wait)
                outcome.failed[wait_id] = str(wait["job_id"])
                if run:
                    fail[str(run)] = message
                log.warning("wait deadline: job failed: %s", message, extra=extra)
            else:
                _decide_by_timeout(wait_store, conn, wait, what)
                outcome.decided[wait_id] = what
                if run:
                    resume.add(str(run))
                log.info("wait deadline: approval decided %s by timeout", what, extra=extra)
    return resume, fail


def run_wait_deadlines(
    store: JobStore,
    starter: RunStarter,
    *,
    grace_seconds: float,
    log: Log,
    limit: int = 100,
) -> DeadlineOutcome:
    """One pass (see the module docstring)."""
    outcome = DeadlineOutcome()
    resume, fail = _act_on_due(store, limit, outcome, log)
    for row in WaitStore(store).unresumed(grace_seconds, limit):
        if row["prefect_flow_run_id"]:
            resume.add(str(row["prefect_flow_run_id"]))
    for run, message in fail.items():
        if not starter.fail(run, message):
            outcome.errors.append(run)
    for run in sorted(resume):
        (outcome.resumed if starter.resume(run) else outcome.errors).append(run)
    return outcome
