"""The rules of wait steps (pure): deadlines, who may decide, event matching, timeouts.

Used by the flow (flows/waiting.py) when a job reaches a wait, by the API when a decision or
an event arrives (api/routes/approvals.py), and by maintenance when a deadline passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from engine.definitions.mapping import evaluate
from engine.definitions.wait_steps import (
    ApprovalWait,
    DeciderRule,
    EventWait,
    SleepWait,
    WaitKind,
    WaitSpec,
    WorkflowCall,
    wait_kind,
)
from engine.errors import MappingError

Decision = Literal["approve", "reject"]
#: What a passed deadline does: decide the approval, or fail the job.
TimeoutOutcome = Literal["approve", "reject", "fail"]

_MISSING = object()


def parse_time(value: Any, *, where: str) -> datetime:
    """An ISO 8601 time with a UTC offset; MappingError for anything else."""
    if not isinstance(value, str):
        raise MappingError(f"{where}: expected an ISO 8601 time, got {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MappingError(f"{where}: {value!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise MappingError(f"{where}: {value!r} has no UTC offset")
    return moment


def deadline(
    spec: WaitSpec, since: datetime, context: Mapping[str, Any], *, step_id: str
) -> datetime | None:
    """When the wait ends by itself: a sleep's wake time, an approval's or event's timeout
    (None: it waits for as long as it takes). A sleep until a past time wakes at `since`."""
    if isinstance(spec, SleepWait):
        if spec.seconds is not None:
            return since + timedelta(seconds=spec.seconds)
        where = f"step '{step_id}' sleep"
        value = evaluate(str(spec.until), context, where=where, key="until.$")
        return max(since, parse_time(value, where=where))
    if isinstance(spec, WorkflowCall) or spec.timeout_seconds is None:
        return None  # a sub-workflow waits for its child (bounded by the child's own deadline)
    return since + timedelta(seconds=spec.timeout_seconds)


def waiting_for(
    kind: WaitKind, step_id: str, since: datetime, until: datetime | None
) -> dict[str, Any]:
    """The `jobs.waiting_for` value (and API field) of a job at a wait."""
    return {
        "kind": kind,
        "step": step_id,
        "since": since.isoformat(),
        "deadline": until.isoformat() if until else None,
    }


def claim_value(claims: Mapping[str, Any], path: str) -> Any:
    """The claim at a dotted path (``app_metadata.role``); `_MISSING` when absent."""
    current: Any = claims
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def rule_allows(rule: DeciderRule, claims: Mapping[str, Any]) -> bool:
    """True when the claim is one of the allowed values (a list claim: any of its items).

    Booleans and numbers are compared by type too, so `true` never matches `1`.
    """
    value = claim_value(claims, rule.claim)
    values = value if isinstance(value, list) else [value]
    allowed = {(type(v), v) for v in rule.one_of}
    return any((type(v), v) in allowed for v in values if isinstance(v, str | int | bool))


@dataclass(frozen=True)
class Verdict:
    """Whether a user may decide an approval, and why not."""

    allowed: bool
    reason: str = ""


def may_decide(spec: ApprovalWait, claims: Mapping[str, Any], owner_id: str | None) -> Verdict:
    """Who decides: the job's owner by default; with `deciders`, the users the rule allows
    (the owner too, unless `forbid_self_approval`)."""
    user_id = claims.get("sub")
    is_owner = user_id is not None and user_id == owner_id
    if spec.deciders is None:
        return Verdict(True) if is_owner else Verdict(False, "only the job's owner decides")
    if is_owner and spec.forbid_self_approval:
        return Verdict(False, "self-approval is forbidden: the job's owner cannot decide")
    if rule_allows(spec.deciders, claims):
        return Verdict(True)
    return Verdict(False, f"claim {spec.deciders.claim!r} is not one of the allowed values")


def payload_matches(match: Mapping[str, Any] | None, payload: Mapping[str, Any]) -> bool:
    """True when every path of `match` finds a value equal to the expected one."""
    for path, expected in (match or {}).items():
        try:
            found = evaluate(path, payload, where="event match", key=path)
        except MappingError:
            return False
        if type(found) is not type(expected) or found != expected:
            return False
    return True


def timeout_outcome(spec: WaitSpec) -> TimeoutOutcome:
    """What a passed deadline does: an approval's `on_timeout`; an event's timeout fails."""
    if isinstance(spec, ApprovalWait):
        return spec.on_timeout
    if isinstance(spec, EventWait):
        return "fail"
    raise ValueError("a sleep has no timeout: its deadline is its wake time")


def approval_output(
    decision: Decision,
    *,
    comment: str | None,
    form: Any,
    decided_by: str | None,
    decided_at: datetime,
) -> dict[str, Any]:
    """The output of a decided approval step (decided_by null: decided by its timeout)."""
    return {
        "decision": "approved" if decision == "approve" else "rejected",
        "comment": comment,
        "form": form,
        "decided_by": decided_by,
        "decided_at": decided_at.isoformat(),
    }


def sleep_output(until: datetime) -> dict[str, Any]:
    """The output of a finished sleep step."""
    return {"slept_until": until.isoformat()}


__all__ = [
    "Decision",
    "TimeoutOutcome",
    "Verdict",
    "approval_output",
    "claim_value",
    "deadline",
    "may_decide",
    "parse_time",
    "payload_matches",
    "rule_allows",
    "sleep_output",
    "timeout_outcome",
    "wait_kind",
    "waiting_for",
]
