"""Request and response bodies of the REST API (they drive the OpenAPI document).

Every request body subclasses `RequestBody`: unknown fields are refused (422, listed by name),
never silently dropped. Before a body gets here, its bytes have passed the input policy of
api/decoding.py (no NUL, lone surrogates, non-finite numbers or excessive nesting).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, Strict

from api.start_times import parse_start_at
from engine.definitions.callback_target import CallbackUrl
from engine.jobs.control import error_kind

JobStatusName = Literal["pending", "running", "completed", "failed", "awaiting_retry"]


def example(**fields: Any) -> ConfigDict:
    """A model config whose OpenAPI schema shows one example body with these fields."""
    return ConfigDict(json_schema_extra={"examples": [fields]})


class RequestBody(BaseModel):
    """Base of every request body: a field the API does not know is an error."""

    model_config = ConfigDict(extra="forbid")


class StartCallback(RequestBody):
    """`on_finish` of a start request: where this job is called back when it ends."""

    url: CallbackUrl = Field(
        description="Receives a signed JSON POST when the job completes or fails (replaces "
        "the workflow's own on_finish URL; must be a public address)."
    )


class StartRequest(RequestBody):
    """Body of POST /workflows/start."""

    model_config = example(
        workflow_id="audio_transcription_v1",
        input_data={
            "audio_url": "https://example.com/interview.mp3",
            "callback_url": "https://example.com/hooks/transcript",
        },
    )

    workflow_id: str = Field(min_length=1, max_length=200, description="Workflow to run.")
    input_data: dict[str, Any] = Field(
        default_factory=dict, description="Must satisfy that version's input_schema."
    )
    workflow_version: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="Version to run; by default the workflow's default version.",
    )
    on_finish: StartCallback | None = Field(
        default=None, description="Call this URL back when the job ends (default: the workflow's)."
    )
    start_at: Annotated[AwareDatetime | None, BeforeValidator(parse_start_at)] = Field(
        default=None,
        description="Start no earlier than this RFC 3339 time, with a timezone offset (at most "
        "MAX_START_DELAY_SECONDS ahead; not in the past). The job stays pending until then.",
    )
    delay_seconds: Annotated[float, Strict()] | None = Field(
        default=None,
        gt=0,
        description="Start this many seconds from now instead (at most MAX_START_DELAY_SECONDS)"
        "; not with start_at.",
    )


class StartResponse(BaseModel):
    """Answer of POST /workflows/start: the job was recorded and will run."""

    model_config = example(
        job_id="5b1f8f0e-2f5e-4b8e-9d0a-0c1d2e3f4a5b",
        status="pending",
        created_at="2026-11-25T21:00:00Z",
    )

    job_id: UUID
    status: JobStatusName
    created_at: datetime
    scheduled_for: datetime | None = Field(
        default=None, description="A delayed start's time (start_at or delay_seconds); else null."
    )


class JobCallback(BaseModel):
    """Delivery of the job's latest `on_finish` callback (table job_callbacks)."""

    status: Literal["pending", "delivered", "failed"] = Field(
        description="pending: owed or to be retried; failed: every attempt failed."
    )
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a pending callback is tried.")
    last_error: str | None
    response_code: int | None = Field(description="The receiver's last HTTP status.")
    delivered_at: datetime | None


class Job(BaseModel):
    """A job as its owner sees it (SPEC.md's jobs row, `id` named `job_id`)."""

    model_config = example(
        job_id="5b1f8f0e-2f5e-4b8e-9d0a-0c1d2e3f4a5b",
        workflow_id="demo_offline_v1",
        workflow_version=1,
        status="completed",
        current_step_id="summary",
        input_data={"text": "hello world"},
        step_data={"normalize": {"text": "hello world"}},
        final_result={"words": 2},
        error_message=None,
        retry_count=0,
        max_retries=3,
        next_retry_at=None,
        state_history=[{"status": "pending", "at": "2026-11-25T21:00:00Z"}],
        created_at="2026-11-25T21:00:00Z",
        started_at="2026-11-25T21:00:00.4Z",
        last_updated_at="2026-11-25T21:00:01Z",
        completed_at="2026-11-25T21:00:01Z",
    )

    job_id: UUID
    workflow_id: str
    workflow_version: int | None = Field(description="The workflow version the job runs.")
    status: JobStatusName
    current_step_id: str | None
    input_data: Any
    step_data: Any
    final_result: Any
    error_message: str | None
    retry_count: int | None
    max_retries: int | None
    next_retry_at: datetime | None
    state_history: Any
    created_at: datetime
    started_at: datetime | None
    last_updated_at: datetime | None
    completed_at: datetime | None
    error_kind: str | None = Field(
        default=None,
        description="Why a failed job failed: a step's error kind, `config`, `crashed`, or "
        "`cancelled` (its owner cancelled it); null unless the job is failed.",
    )
    waiting_for: dict[str, Any] | None = Field(
        default=None,
        description="The wait the running job is at: {kind: approval|sleep|event|workflow, "
        "step, since, deadline}, and for a sub-workflow step {child_job_id, workflow_id}; "
        "null when it is not waiting.",
    )
    parent_job_id: UUID | None = Field(
        default=None,
        description="On a child job: the job whose sub-workflow step started it; else null.",
    )
    parent_step_id: str | None = Field(
        default=None, description="On a child job: the parent's step that started it."
    )
    deadline_at: datetime | None = Field(
        default=None,
        description="When the job must be finished by (its workflow's timeout_seconds after "
        "it was created or last rerun); past it the job fails with error kind `timeout`. "
        "Null when the workflow sets no timeout.",
    )
    callback: JobCallback | None = Field(
        default=None, description="Its on_finish callback's delivery; null when none is owed."
    )
    scheduled_for: datetime | None = Field(
        default=None,
        description="A delayed start: the job stays pending until this time, its flow run "
        "Scheduled for it; null when it starts at once.",
    )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        """Build from a jobs row."""
        data = dict(row)
        data["job_id"] = data.pop("id")
        data.pop("user_id", None)
        data["error_kind"] = error_kind(str(data.get("status")), data.get("state_history"))
        return cls.model_validate(data)


class JobList(BaseModel):
    """A page of the caller's jobs, newest first."""

    jobs: list[Job]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class WorkflowSummary(BaseModel):
    """A workflow the caller can start: its default version's input schema."""

    id: str
    description: str | None
    input_schema: dict[str, Any]
    default_version: int = Field(description="What a start without workflow_version runs.")
    latest_version: int
    enabled: bool


class WorkflowVersion(BaseModel):
    """One immutable version of a workflow."""

    version: int
    created_at: datetime
    content_hash: str = Field(description="MD5 of the definition's canonical JSON text.")
    description: str | None
    input_schema: dict[str, Any]


class WorkflowVersionDetail(WorkflowVersion):
    """One version with its whole definition (steps, mappings, retry policy)."""

    definition: dict[str, Any]


class WorkflowDetail(WorkflowSummary):
    """A workflow with every version, oldest first."""

    versions: list[WorkflowVersion]


class WorkflowList(BaseModel):
    """Every workflow the caller can start."""

    workflows: list[WorkflowSummary]


class RateLimitHealth(BaseModel):
    """How this API process applies rate limits (api/ratelimit.py)."""

    storage: Literal["redis", "memory"] = Field(
        description="The configured storage: Redis (REDIS_URL) or this process's memory."
    )
    scope: Literal["shared", "local"] = Field(
        description="'shared': counted in Redis for every replica; 'local': counted by this "
        "process alone (no REDIS_URL, or Redis failing)."
    )
    fallback_since: datetime | None = Field(
        description="Since when (UTC) Redis has been failing and limits have been local; null "
        "while they are not falling back. It ends at the first limited request after the "
        "cool-down that finds Redis answering."
    )


class Health(BaseModel):
    """Reachability of the parts the API depends on. 'degraded': the database answers but
    Prefect does not, or the rate limits are falling back to local counts."""

    status: Literal["ok", "degraded", "down"]
    database: bool
    prefect: bool
    rate_limit: RateLimitHealth


class ErrorDetail(BaseModel):
    """The body of every 4xx and 5xx answer."""

    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """`{"error": {...}}`."""

    error: ErrorDetail


class Alert(BaseModel):
    """One alert as operators see it."""

    id: int
    kind: str
    subject: str
    severity: Literal["info", "warning", "critical"]
    message: str
    detail: dict[str, Any]
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    delivered_at: datetime | None
    resolution_delivered_at: datetime | None
    delivery_attempts: int
    last_delivery_error: str | None


class AlertList(BaseModel):
    """GET /operator/alerts: alerts newest first."""

    alerts: list[Alert]


class CancelResponse(BaseModel):
    """Answer of POST /jobs/{job_id}/cancel."""

    model_config = example(
        job_id="5b1f8f0e-2f5e-4b8e-9d0a-0c1d2e3f4a5b",
        status="running",
        cancel_requested_at="2026-12-07T15:00:00Z",
        error_kind=None,
        message="cancel requested: the job stops at its next step boundary",
    )

    job_id: UUID
    status: JobStatusName = Field(description="`failed` when cancelled at once.")
    cancel_requested_at: datetime | None
    error_kind: str | None = Field(description="`cancelled` once the job is failed by it.")
    message: str


class RerunRequest(RequestBody):
    """Body of POST /jobs/{job_id}/rerun (optional)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"from_step": "b"}]})

    from_step: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Run this step and every step downstream of it again (their stored "
        "outputs are dropped); by default the job runs from its first unfinished step.",
    )


class RerunResponse(BaseModel):
    """Answer of POST /jobs/{job_id}/rerun: the job is pending again."""

    model_config = example(
        job_id="5b1f8f0e-2f5e-4b8e-9d0a-0c1d2e3f4a5b",
        status="pending",
        rerun=1,
        retry_count=1,
        from_step="b",
        redo=["b", "c"],
        dispatched=True,
    )

    job_id: UUID
    status: JobStatusName
    rerun: int = Field(description="This rerun's number (1 for the job's first rerun).")
    retry_count: int
    from_step: str | None
    redo: list[str] = Field(description="The steps whose stored outputs were dropped.")
    dispatched: bool = Field(
        description="False when Prefect could not be reached: the job stays pending and the "
        "maintenance flow creates its flow run."
    )
