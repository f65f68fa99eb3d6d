"""POST/GET/PATCH/DELETE /schedules: a user's recurring schedules, under row-level security.

Every read and write runs as the caller (engine.db.schedules on the user path), so another
user's schedule is a 404 like a missing one. A rule and its input are checked before anything
is written (engine.schedule_rules; input_data against the workflow's input_schema, the check
POST /workflows/start makes); a refused change writes nothing. The row commits first, then
Prefect's schedule is made to match (engine.schedule_sync): Prefect out of reach leaves the
row with prefect_schedule_id null (or stale) and the maintenance pass brings Prefect in step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from api.auth import AuthError
from api.cursor import decode_cursor, encode_cursor
from api.deps import ReadPrincipal, SettingsDep, StartPrincipal, StoreDep
from api.responses import USER_CHECK, error_responses
from api.schedule_models import Schedule, ScheduleCreate, ScheduleList, ScheduleUpdate
from api.strict_input import StrictJSONRoute
from engine.db.rows import Row
from engine.db.schedules import NewSchedule, ScheduleStore, UnknownScheduleOwnerError
from engine.db.store import JobStore
from engine.definitions.inputs import input_problems
from engine.errors import InputValidationError, Problem, WorkflowDisabledError
from engine.schedule_rules import Rule, check_rule, next_run_after
from engine.schedule_sync import PrefectSchedules
from engine.settings import Settings

logger = logging.getLogger("supaflow.api.schedules")

router = APIRouter(tags=["schedules"], route_class=StrictJSONRoute)


def prefect_schedules(request: Request) -> PrefectSchedules:
    """The app's keeper of Prefect's schedules (created at startup)."""
    return request.app.state.prefect_schedules  # type: ignore[no-any-return]


PrefectSchedulesDep = Annotated[PrefectSchedules, Depends(prefect_schedules)]


def _detail(location: str, message: str, type_: str) -> dict[str, str]:
    return {"location": location, "message": message, "type": type_}


def input_details(workflow: Mapping[str, Any], input_data: Any) -> list[dict[str, str]]:
    """Where `input_data` breaks the workflow's input_schema, as `body.input_data.<field>`
    details (the check POST /workflows/start makes; no schema: any object)."""
    schema = (workflow["definition"] or {}).get("input_schema") or {"type": "object"}
    details = []
    for problem in input_problems(schema, input_data):
        path = [part for part in problem.location.split("/") if part]
        details.append(_detail(".".join(["body", "input_data", *path]), problem.message, "input"))
    return details


def _raise_if(details: list[dict[str, str]]) -> None:
    if details:
        raise InputValidationError("the schedule is not valid", details=details)


def _rule_details(problems: list[Problem]) -> list[dict[str, str]]:
    return [_detail(f"body.{p.location}", p.message, "schedule_rule") for p in problems]


def checked(
    fields: Mapping[str, Any], store: JobStore, settings: Settings, anchor: datetime | None = None
) -> None:
    """Raise InputValidationError naming every bad field of a whole schedule: its rule, its
    timezone, its input against the workflow's input_schema; NotFoundError for a workflow
    or version that does not exist, WorkflowDisabledError for a disabled workflow."""
    workflow = store.get_workflow(fields["workflow_id"], fields.get("workflow_version"))
    if not workflow["enabled"]:
        raise WorkflowDisabledError(f"workflow '{fields['workflow_id']}' is disabled")
    _, problems = check_rule(
        cron=fields.get("cron"),
        interval_seconds=fields.get("interval_seconds"),
        rrule=fields.get("rrule"),
        timezone=fields.get("timezone") or "UTC",
        min_interval_seconds=settings.min_schedule_interval_seconds,
        **({} if anchor is None else {"anchor": anchor}),
    )
    _raise_if(_rule_details(problems) + input_details(workflow, fields.get("input_data") or {}))


def to_schedule(row: Row) -> Schedule:
    """The API form of a schedules row, with its next firing (null while paused)."""
    next_run = None
    if row["active"]:
        try:
            next_run = next_run_after(Rule.from_row(row), datetime.now(UTC))
        except Exception:  # a row written around the API's checks; shown without one
            logger.warning("schedule %s has a rule that does not compute", row["id"])
    return Schedule.model_validate({**row, "next_run_at": next_run})


def _realised(row: Row, schedules: ScheduleStore, prefect: PrefectSchedules) -> Row:
    """Bring Prefect in step with the committed row; the row with its Prefect id."""
    prefect_id = prefect.realise(row)
    if prefect_id is not None and str(row.get("prefect_schedule_id")) != prefect_id:
        schedules.set_prefect_schedule_id(str(row["id"]), prefect_id)
        row = {**row, "prefect_schedule_id": prefect_id}
    return row


_KIND_FIELDS = ("cron", "interval_seconds", "rrule")


@router.post(
    "/schedules",
    response_model=Schedule,
    status_code=201,
    summary="Create a recurring schedule",
    responses=error_responses(*USER_CHECK, 404, 409),
)
def create_schedule(
    body: ScheduleCreate,
    principal: StartPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    prefect: PrefectSchedulesDep,
    response: Response,
) -> Schedule:
    """Start the workflow on a cron expression, an interval or an RRule, with fixed
    input_data. 422 naming the field (`body.cron`, `body.interval_seconds`, `body.rrule`,
    `body.timezone`, `body.input_data.<field>`); 404 for an unknown workflow or version."""
    fields = body.model_dump()
    checked(fields, store, settings)
    kind = next(
        k
        for k, f in zip(("cron", "interval", "rrule"), _KIND_FIELDS, strict=True)
        if fields[f] is not None
    )
    schedules = ScheduleStore(store.pool)
    try:
        row = schedules.create(
            NewSchedule(user_id=principal.user_id, kind=kind, **fields), principal.claims
        )
    except UnknownScheduleOwnerError:
        raise AuthError("token subject is not a known user") from None
    response.headers["Location"] = f"/schedules/{row['id']}"
    return to_schedule(_realised(row, schedules, prefect))


@router.get(
    "/schedules",
    response_model=ScheduleList,
    summary="List your schedules, newest first",
    responses=error_responses(*USER_CHECK),
)
def list_schedules(
    principal: ReadPrincipal,
    store: StoreDep,
    limit_: Annotated[int, Query(alias="limit", ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    workflow_id: Annotated[str | None, Query(max_length=200)] = None,
) -> ScheduleList:
    """A page of the caller's schedules; filters by workflow_id."""
    rows = ScheduleStore(store.pool).list_for_user(
        principal.claims,
        limit=limit_ + 1,
        workflow_id=workflow_id,
        cursor=decode_cursor(cursor) if cursor else None,
    )
    page = rows[:limit_]
    next_cursor = (
        encode_cursor(page[-1]["created_at"], str(page[-1]["id"])) if len(rows) > limit_ else None
    )
    return ScheduleList(schedules=[to_schedule(r) for r in page], next_cursor=next_cursor)


@router.get(
    "/schedules/{schedule_id}",
    response_model=Schedule,
    summary="Get one of your schedules",
    responses=error_responses(*USER_CHECK, 404),
)
def get_schedule(schedule_id: UUID, principal: ReadPrincipal, store: StoreDep) -> Schedule:
    """The schedule, its next firing and its last outcome; another user's is 404."""
    return to_schedule(ScheduleStore(store.pool).get(str(schedule_id), principal.claims))


def merged(before: Row, body: ScheduleUpdate) -> dict[str, Any]:
    """The writable fields after the change: the fields given replace the row's; a new rule
    field replaces the rule (the other two cleared); 422 for two rule fields at once."""
    given = body.model_dump(include=body.model_fields_set)
    rule_given = [f for f in _KIND_FIELDS if given.get(f) is not None]
    if len(rule_given) > 1:
        message = "give at most one of cron, interval_seconds, rrule"
        _raise_if([_detail(f"body.{f}", message, "schedule_rule") for f in rule_given])
    changes = {k: v for k, v in given.items() if v is not None or k in ("name", "workflow_version")}
    if rule_given:
        kind = {"cron": "cron", "interval_seconds": "interval", "rrule": "rrule"}[rule_given[0]]
        changes.update({f: given.get(f) for f in _KIND_FIELDS}, kind=kind)
    return changes


@router.patch(
    "/schedules/{schedule_id}",
    response_model=Schedule,
    summary="Pause, resume or change one of your schedules",
    responses=error_responses(*USER_CHECK, 404, 409),
)
def update_schedule(
    schedule_id: UUID,
    body: ScheduleUpdate,
    principal: StartPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    prefect: PrefectSchedulesDep,
) -> Schedule:
    """`{"active": false}` pauses (Prefect stops firing it), `{"active": true}` resumes; a
    new rule, timezone or input_data is checked as on create (422 naming the field) and
    nothing changes when it is refused. Another user's schedule is 404."""
    schedules = ScheduleStore(store.pool)

    def change(before: Row) -> dict[str, Any]:
        changes = merged(before, body)
        checked({**before, **changes}, store, settings, anchor=before["created_at"])
        return changes

    _, after = schedules.update(str(schedule_id), change, principal.claims)
    return to_schedule(_realised(after, schedules, prefect))


@router.delete(
    "/schedules/{schedule_id}",
    status_code=204,
    summary="Delete one of your schedules",
    responses=error_responses(*USER_CHECK, 404),
)
def delete_schedule(
    schedule_id: UUID, principal: StartPrincipal, store: StoreDep, prefect: PrefectSchedulesDep
) -> Response:
    """The schedule fires no more (its Prefect schedule is deleted); its jobs stay.
    Another user's schedule is 404."""
    row = ScheduleStore(store.pool).delete(str(schedule_id), principal.claims)
    prefect.remove(row)
    return Response(status_code=204)
