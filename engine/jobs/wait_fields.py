"""How a wait step's spec is stored in `job_waits` and read back (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.definitions.wait_steps import (
    ApprovalWait,
    EventWait,
    SleepWait,
    WaitKind,
    WaitSpec,
    WorkflowCall,
    wait_kind,
)


def row_fields(spec: WaitSpec, until: datetime | None) -> dict[str, Any]:
    """The `job_waits` columns of a new wait of `spec` ending by itself at `until`."""
    fields: dict[str, Any] = {
        "kind": wait_kind(spec),
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "deadline": until,
    }
    if isinstance(spec, EventWait):
        fields["event_name"] = spec.name
    if isinstance(spec, ApprovalWait):
        if spec.deciders is not None:
            fields["deciders"] = spec.deciders.model_dump(mode="json", by_alias=True)
        fields["forbid_self_approval"] = spec.forbid_self_approval
    return fields


def spec_of(kind: WaitKind | str, stored: Any) -> WaitSpec:
    """The spec of a stored wait (its `spec` column)."""
    if kind == "approval":
        return ApprovalWait.model_validate(stored)
    if kind == "sleep":
        return SleepWait.model_validate(stored)
    if kind == "workflow":
        return WorkflowCall.model_validate(stored)
    return EventWait.model_validate(stored)
