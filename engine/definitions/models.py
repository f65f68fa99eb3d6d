"""The workflow definition format (pydantic models).

A definition is stored in `workflows.definition`. `definitions/schema/workflow.schema.json`
is generated from these models (`supaflow definitions schema`) for editors.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.definitions.callback_target import CallbackTarget
from engine.definitions.conditions import MAX_LENGTH as MAX_CONDITION_LENGTH
from engine.definitions.switch_steps import SwitchSpec
from engine.definitions.wait_steps import (
    ApprovalWait,
    EventWait,
    SleepWait,
    WaitSpec,
    WorkflowCall,
)
from engine.errors import ErrorKind

STEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
TRANSFORMER_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
WORKFLOW_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"

Strategy = Literal["fixed", "linear", "exponential"]


class RetrySpec(BaseModel):
    """A partial retry policy; unset fields fall through to the next level of precedence.

    Precedence: step `retry`, then workflow `retry`, then the transformer's `retry` default,
    then built-in defaults; `max_retries` last falls back to the job's `max_retries` column.
    """

    model_config = ConfigDict(extra="forbid")

    max_retries: int | None = Field(default=None, ge=0, le=25)
    strategy: Strategy | None = None
    initial_delay_seconds: float | None = Field(default=None, ge=0, le=3600)
    backoff_factor: float | None = Field(default=None, ge=1, le=10)
    max_delay_seconds: float | None = Field(default=None, ge=0, le=86400)
    jitter: float | None = Field(
        default=None, ge=0, le=1, description="Each delay is scaled by 1 ± a random share."
    )
    retry_on: list[ErrorKind] | None = Field(
        default=None,
        description="Error kinds retried; default: timeout, connection, "
        "rate_limited, server_error.",
    )


class StepDefinition(BaseModel):
    """One step: a transformer applied to an input built by the mapping, or a wait
    (`approval`, `sleep`, `wait_for_event`), or a sub-workflow (`workflow`), or a branch
    (`switch`); exactly one. Any step may have a condition (`when`)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STEP_ID_PATTERN)
    transformer: str | None = Field(default=None, pattern=TRANSFORMER_ID_PATTERN)
    approval: ApprovalWait | None = None
    sleep: SleepWait | None = None
    wait_for_event: EventWait | None = None
    workflow: WorkflowCall | None = Field(
        default=None,
        description="A sub-workflow: start this workflow as a child job (its input_data: the "
        "rendered `input`) and wait for it; its final_result is the step's output.",
    )
    switch: SwitchSpec | None = Field(
        default=None, description="A branch: the first case whose condition holds runs its steps."
    )
    input: dict[str, Any] = Field(
        default_factory=dict,
        description="Keys ending in '.$' take a JSONPath over {input, steps, job}, or a list of "
        "them (the first that matches wins); 'name.default' next to 'name.$' is used when "
        "nothing matches; other values are literal.",
    )
    depends_on: list[str] | None = Field(
        default=None,
        description="Steps this one waits for. Unset: the previous step in the list. "
        "[]: none (starts at once).",
    )
    retry: RetrySpec | None = None
    timeout_seconds: float | None = Field(default=None, gt=0, le=86400)
    when: str | None = Field(
        default=None,
        max_length=MAX_CONDITION_LENGTH,
        description="A condition over {input, steps, job}, e.g. "
        "'$.steps.transcribe.word_count > 100'; when false the step is skipped.",
    )
    for_each: str | None = Field(
        default=None,
        description="Fan-out: a JSONPath over {input, steps, job} yielding a list; the step "
        "runs once per item, its input mapping reading the item as $.item and its position "
        "as $.index. The output is the list of results, in item order.",
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, le=100, description="Fan-out: items running at once (default 10)."
    )
    on_item_error: Literal["fail", "collect"] = Field(
        default="fail",
        description="Fan-out: 'fail' fails the step when an item fails after its retries; "
        "'collect' completes it with {results (null for failed items), errors}.",
    )

    @property
    def wait(self) -> WaitSpec | None:
        """The step's wait kind (None for a transformer step)."""
        return self.approval or self.sleep or self.wait_for_event or self.workflow


class WorkflowDefinition(BaseModel):
    """A whole workflow: the input it accepts, its steps, and how its result is built."""

    model_config = ConfigDict(extra="forbid")

    input_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON Schema (draft 2020-12) that input_data must satisfy.",
    )
    retry: RetrySpec | None = None
    steps: list[StepDefinition] = Field(min_length=1, max_length=100)
    output: dict[str, Any] | None = Field(
        default=None,
        description="Mapping (same language as step input) that builds final_result; "
        "unset: the output of every step, keyed by step id.",
    )
    log_step_io: bool = Field(
        default=False,
        description="Log each step's input and output (secret-looking keys redacted).",
    )
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=7 * 86400,
        description="The job's deadline: seconds from its creation (or its last rerun) within "
        "which it must finish, across retries, waits and resubmissions; past it the job fails "
        "with error kind 'timeout'. Unset: no job timeout.",
    )
    on_finish: CallbackTarget | None = Field(
        default=None,
        description="Called back (signed JSON POST, retried) when a job completes or fails.",
    )
