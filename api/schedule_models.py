"""Request and response bodies of the /schedules endpoints (recurring schedules)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, Strict

from api.models import RequestBody, example

CatchUp = Literal["none", "latest"]

_CRON = "A five-field cron expression (minute hour day month weekday), e.g. '0 9 * * 1-5'."
_INTERVAL = "Fire every this many seconds (at least MIN_SCHEDULE_INTERVAL_SECONDS)."
_RRULE = "An RFC 5545 recurrence rule, e.g. 'FREQ=WEEKLY;BYDAY=MO;BYHOUR=9'."
_TIMEZONE = "IANA time zone the rule is read in (daylight saving time included)."
_CATCH_UP = (
    "Firings missed while the service was down: 'latest' runs the latest one once, 'none' "
    "runs none."
)


class ScheduleCreate(RequestBody):
    """Body of POST /schedules: exactly one of `cron`, `interval_seconds`, `rrule`."""

    model_config = example(
        workflow_id="demo_offline_v1",
        cron="0 9 * * 1-5",
        timezone="Europe/Berlin",
        input_data={"text": "good morning"},
    )

    workflow_id: str = Field(min_length=1, max_length=200, description="Workflow to start.")
    workflow_version: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="Version to run; by default the workflow's default version at each firing.",
    )
    name: str | None = Field(default=None, min_length=1, max_length=200, description="A label.")
    cron: str | None = Field(default=None, min_length=1, max_length=200, description=_CRON)
    interval_seconds: Annotated[float, Strict()] | None = Field(
        default=None, gt=0, description=_INTERVAL
    )
    rrule: str | None = Field(default=None, min_length=1, max_length=2000, description=_RRULE)
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description=_TIMEZONE)
    input_data: dict[str, Any] = Field(
        default_factory=dict, description="Every firing's input; must satisfy the input_schema."
    )
    active: bool = Field(default=True, description="False: created paused.")
    catch_up: CatchUp = Field(default="latest", description=_CATCH_UP)


class ScheduleUpdate(RequestBody):
    """Body of PATCH /schedules/{id}: only the fields given change.

    Giving one of `cron`, `interval_seconds`, `rrule` replaces the rule (switching kind if
    it is another one); `{"active": false}` pauses, `{"active": true}` resumes.
    """

    model_config = example(active=False)

    name: str | None = Field(default=None, min_length=1, max_length=200, description="A label.")
    workflow_version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    cron: str | None = Field(default=None, min_length=1, max_length=200, description=_CRON)
    interval_seconds: Annotated[float, Strict()] | None = Field(
        default=None, gt=0, description=_INTERVAL
    )
    rrule: str | None = Field(default=None, min_length=1, max_length=2000, description=_RRULE)
    timezone: str | None = Field(default=None, min_length=1, max_length=64, description=_TIMEZONE)
    input_data: dict[str, Any] | None = Field(default=None)
    active: bool | None = Field(default=None, description="False pauses, true resumes.")
    catch_up: CatchUp | None = Field(default=None, description=_CATCH_UP)


class Schedule(BaseModel):
    """A schedule as its owner sees it, with its next firing and its last outcome."""

    model_config = example(
        id="0b8e3c1a-6a57-4d0e-9a59-3f1c2b7d9e10",
        workflow_id="demo_offline_v1",
        kind="cron",
        cron="0 9 * * 1-5",
        timezone="Europe/Berlin",
        input_data={"text": "good morning"},
        active=True,
        catch_up="latest",
        next_run_at="2026-12-08T08:00:00Z",
        last_status="completed",
        consecutive_failures=0,
    )

    id: UUID
    name: str | None = None
    workflow_id: str
    workflow_version: int | None = None
    kind: Literal["cron", "interval", "rrule"]
    cron: str | None = None
    interval_seconds: float | None = None
    rrule: str | None = None
    timezone: str
    input_data: dict[str, Any]
    active: bool
    catch_up: CatchUp
    next_run_at: datetime | None = Field(
        default=None, description="The next firing (null while paused or when none is left)."
    )
    prefect_schedule_id: UUID | None = Field(
        default=None, description="Its Prefect deployment schedule (null until Prefect has it)."
    )
    created_at: datetime
    updated_at: datetime
    last_fired_for: datetime | None = Field(
        default=None, description="Scheduled time of the latest firing that created a job."
    )
    last_job_id: UUID | None = Field(default=None, description="That firing's job.")
    last_status: str | None = Field(default=None, description="How the latest job ended.")
    consecutive_failures: int = Field(default=0, description="Failed jobs in a row.")


class ScheduleList(BaseModel):
    """A page of the caller's schedules, newest first."""

    schedules: list[Schedule]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page (null: last page)."
    )
