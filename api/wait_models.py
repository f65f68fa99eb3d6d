"""Request and response bodies of the approval and event routes (api/routes/approvals.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from api.models import RequestBody


class Approval(BaseModel):
    """One approval a job waits for (or waited for) at one of its steps."""

    approval_id: UUID
    job_id: UUID
    step_id: str
    status: Literal["pending", "decided", "expired"] = Field(
        description="'expired': its deadline failed the job (on_timeout fail)."
    )
    created_at: datetime
    deadline: datetime | None
    form_schema: dict[str, Any] | None = Field(
        description="JSON Schema the decision's `form` must match (null: no form)."
    )
    deciders: dict[str, Any] | None = Field(
        description="The rule over the decider's JWT claims (null: the job's owner decides)."
    )
    forbid_self_approval: bool
    decision: Literal["approve", "reject"] | None
    comment: str | None
    form: Any
    decided_by: UUID | None = Field(description="Null while pending, or decided by timeout.")
    decided_at: datetime | None
    reason: Literal["decision", "timeout"] | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Approval:
        """From a job_waits row of kind approval."""
        spec = row.get("spec") or {}
        return cls(
            approval_id=row["id"],
            job_id=row["job_id"],
            step_id=row["step_id"],
            status="decided" if row["status"] == "consumed" else row["status"],
            created_at=row["created_at"],
            deadline=row["deadline"],
            form_schema=spec.get("form_schema"),
            deciders=row["deciders"],
            forbid_self_approval=row["forbid_self_approval"],
            decision=row["decision"],
            comment=row["comment"],
            form=row["form"],
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
            reason=row["reason"],
        )


class ApprovalList(BaseModel):
    """The approvals of one job, oldest first."""

    approvals: list[Approval]


class DecisionRequest(RequestBody):
    """An approval's decision."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"decision": "approve", "comment": "looks good", "form": {"score": 4}}]
        },
    )

    decision: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=2000)
    form: dict[str, Any] | None = Field(
        default=None, description="Validated against the approval's form_schema."
    )


class DecisionResponse(BaseModel):
    """The decided approval, and whether its job's flow run was resumed at once."""

    approval: Approval
    resumed: bool = Field(
        description="False when Prefect could not be reached: maintenance resumes it."
    )


class EventRequest(RequestBody):
    """An event for a job: its payload becomes the output of the step it wakes."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"payload": {"status": "paid", "amount": 42}}]},
    )

    payload: dict[str, Any] = Field(default_factory=dict, description="Any JSON object.")


class WokenWait(BaseModel):
    """One wait an event decided."""

    wait_id: UUID
    step_id: str


class EventResponse(BaseModel):
    """What an event woke."""

    job_id: UUID
    event: str
    woke: list[WokenWait]
    resumed: bool = Field(
        description="False when Prefect could not be reached: maintenance resumes it."
    )
