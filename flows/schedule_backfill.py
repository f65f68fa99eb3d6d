"""The maintenance pass that makes the firings Prefect's runs lost (the schedules' safety net).

A firing's job is made by its own fire-schedule flow run (flows/schedules.py). Two things
lose a firing without any run making its job:

- Prefect deletes every not yet started auto-scheduled run of the deployment whenever one of
  its schedules is created, changed or deleted, so the due runs of the *other* schedules
  (one deployment holds them all) vanish before a worker picks them up;
- a run that crashed (the database down, the worker killed) made nothing, and nothing
  retries it.

Each pass, for every active schedule: its latest due firing (the last time its rule fires at
or before now, as Prefect's scheduler dates it, not before the row was created or last
changed: engine.schedule_rules.latest_run_at_or_before) is made when the catch-up rule fires
it (engine.jobs.schedule_firing.needs_backfill: left to its own run for a minute, then within
SCHEDULE_MISFIRE_GRACE_SECONDS, or at any age with catch_up 'latest') and no job has its key
`schedule:<id>:<time>`. It is made exactly as its run would (flows.schedules.fire): one job,
its run-workflow flow run started (Prefect down: the pending dispatch starts it later),
counted `backfilled`. Two passes at once, or a pass and the late run itself, make one job:
the key's unique index decides, the other finds it (`duplicate`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from engine.db.rows import Row
from engine.db.schedule_firings import ScheduleFirings
from engine.db.store import JobStore
from engine.jobs.schedule_firing import backfill_bound, firing_key, needs_backfill
from engine.schedule_rules import Rule, latest_run_at_or_before
from engine.settings import Settings
from flows.schedules import fire

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]


def due_firing(row: Row, now: datetime, grace_seconds: float) -> datetime | None:
    """The schedule's latest due firing when the backfill should make it (its job may still
    exist: the caller checks the key), else None."""
    latest = latest_run_at_or_before(
        Rule.from_row(row), now, backfill_bound(row["created_at"], row["updated_at"])
    )
    wanted = needs_backfill(
        latest,
        now=now,
        catch_up=str(row["catch_up"]),
        last_fired_for=row["last_fired_for"],
        grace_seconds=grace_seconds,
    )
    return latest if wanted else None


def _due_firings(
    rows: list[Row], now: datetime, grace: float, log: Log
) -> list[tuple[Row, datetime]]:
    due = []
    for row in rows:
        try:
            at = due_firing(row, now, grace)
        except Exception as exc:  # a row stored around the API's checks: skip it, go on
            log.warning(
                "schedule backfill: could not compute the latest due firing",
                extra={
                    "decision": "schedule_backfill",
                    "schedule_id": str(row["id"]),
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            continue
        if at is not None:
            due.append((row, at))
    return due


def run_schedule_backfill(
    store: JobStore, settings: Settings, *, log: Log, now: datetime | None = None
) -> dict[str, Any]:
    """One pass; what it did: how many active schedules it checked and the firings it made
    (schedule_id, scheduled_for, outcome, job_id)."""
    moment = now or datetime.now(UTC)
    firings = ScheduleFirings(store)
    rows = firings.active_schedules()
    grace = settings.schedule_misfire_grace_seconds
    due = _due_firings(rows, moment, grace, log)
    found = firings.jobs_found(due)
    made = []
    for row, at in due:
        if firing_key(str(row["id"]), at) in found:
            continue
        try:
            result = fire(str(row["id"]), at, now=moment, backfill=True)
        except Exception:  # one schedule's failure must not stop the pass or maintenance
            log.exception(
                "schedule backfill: the firing failed",
                extra={"decision": "schedule_backfill", "schedule_id": str(row["id"])},
            )
            continue
        if result["outcome"] != "backfilled":  # made meanwhile, or paused or disabled since
            continue
        made.append(result)
        log.warning(
            "schedule firing backfilled: its own run made no job",
            extra={**result, "decision": "schedule_backfill"},
        )
    return {"checked": len(rows), "backfilled": made}
