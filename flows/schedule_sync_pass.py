"""The maintenance pass that makes Prefect's schedules match public.schedules.

The API writes each row first and Prefect second (engine.schedule_sync); when Prefect was out
of reach, or a row was written around the API, Prefect and the rows differ until this pass:
it creates the missing Prefect schedules, updates the changed ones (active, rule, timezone),
deletes the orphans (slugs that are schedule ids no row has) and records each row's Prefect
schedule id. Without the fire-schedule deployment (no warm worker started yet) it does
nothing and says so.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect.client.orchestration import SyncPrefectClient
from prefect.exceptions import ObjectNotFound

from engine.db.schedules import ScheduleStore
from engine.db.store import JobStore
from engine.schedule_sync import PrefectSchedules
from engine.settings import Settings

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


def run_schedule_sync(
    store: JobStore, settings: Settings, client: SyncPrefectClient, *, log: Log
) -> dict[str, Any]:
    """One pass; what it did (created, updated, deleted, failed, recorded) or the error."""
    schedules = ScheduleStore(store.pool)
    rows = schedules.all()
    try:
        report = PrefectSchedules(client, settings.schedule_deployment).reconcile(rows)
    except ObjectNotFound:
        log.warning(
            "the fire-schedule deployment does not exist; schedules are not synced",
            extra={"decision": "schedule_sync", "deployment": settings.schedule_deployment},
        )
        return {"error": "deployment_missing"}
    except Exception as exc:
        log.warning(
            "could not sync schedules with Prefect",
            extra={"decision": "schedule_sync", "error": f"{type(exc).__name__}: {exc}"},
        )
        return {"error": "prefect_unreachable"}
    recorded = 0
    for row in rows:
        prefect_id = report.prefect_ids.get(str(row["id"]))
        if prefect_id is not None and str(row["prefect_schedule_id"]) != prefect_id:
            recorded += schedules.set_prefect_schedule_id(str(row["id"]), prefect_id)
    if report.created or report.updated or report.deleted or report.failed:
        log.info(
            "schedules synced with Prefect",
            extra={
                "decision": "schedule_sync",
                # Not "created": a LogRecord attribute, which `extra` may not overwrite.
                "schedules_created": report.created,
                "schedules_updated": report.updated,
                "schedules_deleted": report.deleted,
                "schedules_failed": report.failed,
            },
        )
    return {
        "created": report.created,
        "updated": report.updated,
        "deleted": report.deleted,
        "failed": report.failed,
        "recorded": recorded,
    }
