"""The wait step kinds of the definition language: `approval`, `sleep`, `wait_for_event`,
and `workflow` (a sub-workflow: the step starts another workflow as a child job).

A step has exactly one of `transformer` or a wait kind (checked in engine.definitions.checks).
A wait step runs nothing: the job waits, holding no worker, until a person decides, a time
comes or the app sends an event; what arrives becomes the step's output:

- approval -> ``{decision, comment, form, decided_by, decided_at}``
- sleep -> ``{slept_until}``
- wait_for_event -> the event's payload
- workflow -> the child job's `final_result` (a failed child fails the step)

Unlike the other wait kinds, a `workflow` step takes an `input` mapping: rendered, it is the
child job's input_data (validated against the child workflow's input_schema).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The longest a wait may last (30 days).
MAX_WAIT_SECONDS = 30 * 86400
#: An event name: what `POST /jobs/{id}/events/{name}` names.
EVENT_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$"
#: A claim path of the verified JWT, dotted (e.g. ``app_metadata.role``).
CLAIM_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,62}(\.[A-Za-z_][A-Za-z0-9_-]{0,62}){0,7}$"

OnTimeout = Literal["reject", "approve", "fail"]
WaitKind = Literal["approval", "sleep", "event", "workflow"]
#: A workflow id (the same pattern as engine.definitions.models.WORKFLOW_ID_PATTERN).
CHILD_WORKFLOW_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class DeciderRule(BaseModel):
    """Who may decide: users whose verified token's claim `claim` is one of `in`.

    A claim holding a list matches when any of its items is one of `in`.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    claim: str = Field(
        pattern=CLAIM_PATH_PATTERN, description="Dotted claim path, e.g. app_metadata.role."
    )
    one_of: list[str | int | bool] = Field(
        alias="in", min_length=1, max_length=100, description="Allowed values of the claim."
    )


class ApprovalWait(BaseModel):
    """Wait until an allowed user approves or rejects (with an optional comment and form)."""

    model_config = ConfigDict(extra="forbid")

    form_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema (draft 2020-12, an object) the decision's `form` must match.",
    )
    deciders: DeciderRule | None = Field(
        default=None, description="Unset: the job's owner decides."
    )
    forbid_self_approval: bool = Field(
        default=False, description="The job's owner may not decide (needs `deciders`)."
    )
    timeout_seconds: float | None = Field(default=None, gt=0, le=MAX_WAIT_SECONDS)
    on_timeout: OnTimeout = Field(
        default="fail",
        description="At the deadline: decide 'reject' or 'approve', or 'fail' the job.",
    )


class SleepWait(BaseModel):
    """Wait for `seconds`, or until the time a JSONPath (`until.$`) reads from the data."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    seconds: float | None = Field(default=None, gt=0, le=MAX_WAIT_SECONDS)
    until: str | None = Field(
        default=None,
        alias="until.$",
        max_length=1000,
        description="JSONPath over {input, steps, job} to an ISO 8601 time with a UTC offset.",
    )


class EventWait(BaseModel):
    """Wait until the app sends event `name` for this job and its payload matches `match`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=EVENT_NAME_PATTERN)
    match: dict[str, Any] | None = Field(
        default=None,
        description="Singular JSONPaths over the payload and the value each must equal.",
    )
    timeout_seconds: float | None = Field(default=None, gt=0, le=MAX_WAIT_SECONDS)


class WorkflowCall(BaseModel):
    """Start workflow `workflow_id` as a child job (same owner) with the step's rendered
    `input` as its input_data, and wait, holding no worker, until the child ends."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str = Field(pattern=CHILD_WORKFLOW_ID_PATTERN, description="The child workflow.")
    version: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="The child workflow's version; unset: its default version when the child "
        "starts.",
    )


WaitSpec = ApprovalWait | SleepWait | EventWait | WorkflowCall


def wait_kind(spec: WaitSpec) -> WaitKind:
    """The `kind` of `jobs.waiting_for` and of `job_waits` for a wait step's spec."""
    if isinstance(spec, ApprovalWait):
        return "approval"
    if isinstance(spec, SleepWait):
        return "sleep"
    if isinstance(spec, WorkflowCall):
        return "workflow"
    return "event"
