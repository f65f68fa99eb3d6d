"""Keeping Prefect's schedules in step with public.schedules: one DeploymentSchedule per row.

Every row is one schedule of the fire-schedule deployment (SCHEDULE_DEPLOYMENT, created by the
warm worker: worker/schedule_deployment.py), with per-schedule parameters
`{"schedule_id": <row id>}` and the row id as its slug, `active` mirroring the row, and the
row's cron, interval or RRule in its timezone (engine.schedule_rules.prefect_schedule).

The row is always written first. The API then calls `realise` (create or update) or `remove`;
if Prefect is out of reach they return None/False and the row keeps prefect_schedule_id null
(or stale); the maintenance pass (flows/schedule_sync_pass.py) calls `reconcile`, which makes
the deployment's schedules match the rows: creates the missing, updates the changed, deletes
the orphans (a schedule whose slug is a schedule id no row has), leaving alone schedules
whose slug is not a schedule id (someone else's).

Prefect deletes the deployment's not-yet-started auto-scheduled runs whenever one of its
schedules changes; `realise` and `remove` then ask Prefect to schedule the deployment at
once, so the other schedules' next runs are back in milliseconds instead of at the
scheduler's next loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.objects import DeploymentSchedule
from prefect.exceptions import ObjectNotFound

from engine.schedule_rules import PrefectSchedule, Rule, next_run_after, prefect_schedule

logger = logging.getLogger("supaflow.schedule_sync")

#: How many upcoming dates two schedules must share to count as the same schedule.
SAME_DATES = 3


def schedule_parameters(schedule_id: str) -> dict[str, Any]:
    """The parameters a row's Prefect schedule passes to the fire-schedule flow."""
    return {"schedule_id": schedule_id}


def _is_schedule_id(slug: str | None) -> bool:
    try:
        return slug is not None and str(UUID(slug)) == slug
    except ValueError:
        return False


def _upcoming(schedule: Any, n: int = SAME_DATES) -> list[datetime]:
    """The next `n` firings of a Prefect schedule (client form) from now."""
    rule = _rule_of(schedule)
    dates: list[datetime] = []
    moment = datetime.now(UTC)
    while rule is not None and len(dates) < n:
        following = next_run_after(rule, moment)
        if following is None:
            break
        dates.append(following)
        moment = following
    return dates


def _rule_of(schedule: Any) -> Rule | None:
    """The Rule of a Prefect client schedule (None: a kind this module never writes)."""
    timezone = getattr(schedule, "timezone", None) or "UTC"
    if hasattr(schedule, "cron"):
        return Rule(kind="cron", cron=schedule.cron, timezone=timezone)
    if hasattr(schedule, "rrule"):
        return Rule(kind="rrule", rrule=schedule.rrule, timezone=timezone)
    if hasattr(schedule, "interval"):
        return Rule(
            kind="interval",
            interval_seconds=schedule.interval.total_seconds(),
            timezone=timezone,
            anchor=schedule.anchor_date,
        )
    return None


def in_step(row: Mapping[str, Any], existing: DeploymentSchedule) -> bool:
    """Whether Prefect's schedule already is what the row says (active, parameters, slug,
    and the same next firings in the same timezone)."""
    desired = prefect_schedule(Rule.from_row(row))
    return (
        existing.active == bool(row["active"])
        and existing.parameters == schedule_parameters(str(row["id"]))
        and existing.slug == str(row["id"])
        and getattr(existing.schedule, "timezone", None) == desired.timezone
        and type(existing.schedule).__name__ == type(desired).__name__
        and _upcoming(existing.schedule) == _upcoming(desired)
    )


@dataclass
class SyncReport:
    """What one reconcile did; `prefect_ids` maps row id to its Prefect schedule id now."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    failed: int = 0
    prefect_ids: dict[str, str] = field(default_factory=dict)


class PrefectSchedules:
    """Creates, updates and deletes the fire-schedule deployment's schedules.

    Built on a caller's client, or with `own_client` (the API: opened on first use, closed in
    `close`, connect retries off so a request never waits on an unreachable Prefect).
    """

    def __init__(
        self,
        client: SyncPrefectClient | None,
        deployment_name: str,
        *,
        api_url: str | None = None,
        fail_fast: bool = False,
    ) -> None:
        self.deployment_name = deployment_name
        self._api_url = api_url
        self._client = client
        self._owns_client = client is None
        self._fail_fast = fail_fast
        self._deployment_id: UUID | None = None
        self._lock = threading.Lock()

    @classmethod
    def own_client(
        cls, deployment_name: str, *, api_url: str | None = None, fail_fast: bool = False
    ) -> PrefectSchedules:
        """Schedules kept through a client of their own (PREFECT_API_URL unless `api_url`)."""
        return cls(None, deployment_name, api_url=api_url, fail_fast=fail_fast)

    @property
    def client(self) -> SyncPrefectClient:
        """The Prefect client; an owned one is opened here, on first use."""
        with self._lock:
            if self._client is None:
                client = (
                    SyncPrefectClient(self._api_url)
                    if self._api_url
                    else get_client(sync_client=True)
                )
                if self._fail_fast:
                    from engine.prefect_private import without_connect_retries

                    without_connect_retries(client)
                client.__enter__()
                self._client = client
            return self._client

    def deployment_id(self) -> UUID:
        """The fire-schedule deployment's id (looked up once; ObjectNotFound when absent)."""
        if self._deployment_id is None:
            self._deployment_id = self.client.read_deployment_by_name(self.deployment_name).id
        return self._deployment_id

    def _create(self, row: Mapping[str, Any], schedule: PrefectSchedule) -> str:
        schedule_id = str(row["id"])
        create = DeploymentScheduleCreate(
            schedule=schedule,
            active=bool(row["active"]),
            parameters=schedule_parameters(schedule_id),
            slug=schedule_id,
        )
        created = self.client.create_deployment_schedules(self.deployment_id(), [create])
        return str(created[0].id)

    def _update(self, prefect_id: str, row: Mapping[str, Any], schedule: PrefectSchedule) -> None:
        self.client.update_deployment_schedule(
            self.deployment_id(),
            UUID(prefect_id),
            active=bool(row["active"]),
            schedule=schedule,
            parameters=schedule_parameters(str(row["id"])),
            slug=str(row["id"]),
        )

    def _by_slug(self, slug: str) -> DeploymentSchedule | None:
        found = self.client.read_deployment_schedules(self.deployment_id())
        return next((s for s in found if s.slug == slug), None)

    def _write(self, row: Mapping[str, Any]) -> str:
        """Create or update the row's Prefect schedule; its id."""
        schedule = prefect_schedule(Rule.from_row(row))
        known = row.get("prefect_schedule_id")
        if known is not None:
            try:
                self._update(str(known), row, schedule)
                return str(known)
            except ObjectNotFound:
                pass  # deleted in Prefect meanwhile: created again below
        existing = self._by_slug(str(row["id"]))  # created before, its id not recorded
        if existing is not None:
            self._update(str(existing.id), row, schedule)
            return str(existing.id)
        return self._create(row, schedule)

    def realise(self, row: Mapping[str, Any]) -> str | None:
        """Make the row's Prefect schedule what the row says; its id, or None when Prefect
        cannot be reached or refuses (the maintenance pass tries again)."""
        try:
            prefect_id = self._write(row)
            self._schedule_now()
            return prefect_id
        except Exception as exc:
            self._deployment_id = None
            logger.warning(
                "could not write the schedule to Prefect; the maintenance pass will",
                extra={"schedule_id": str(row["id"]), "error": f"{type(exc).__name__}: {exc}"},
            )
            return None

    def remove(self, row: Mapping[str, Any]) -> bool:
        """Delete the deleted row's Prefect schedule (by its id, else its slug); True once
        Prefect has none, False when it cannot be reached (the pass deletes the orphan)."""
        try:
            prefect_id = row.get("prefect_schedule_id")
            if prefect_id is None:
                existing = self._by_slug(str(row["id"]))
                prefect_id = None if existing is None else existing.id
            if prefect_id is not None:
                with contextlib.suppress(ObjectNotFound):  # already gone
                    self.client.delete_deployment_schedule(
                        self.deployment_id(), UUID(str(prefect_id))
                    )
                self._schedule_now()
            return True
        except Exception as exc:
            self._deployment_id = None
            logger.warning(
                "could not delete the schedule in Prefect; the maintenance pass will",
                extra={"schedule_id": str(row["id"]), "error": f"{type(exc).__name__}: {exc}"},
            )
            return False

    def _schedule_now(self) -> None:
        """Have Prefect create the deployment's upcoming runs now (a schedule change deleted
        the ones not started yet); best effort: the scheduler's own loop does it too."""
        try:
            self.client.request(
                "POST", "/deployments/{id}/schedule", path_params={"id": self.deployment_id()}
            )
        except Exception as exc:
            logger.info("could not ask Prefect to schedule now: %s", exc)

    def reconcile(self, rows: Iterable[Mapping[str, Any]]) -> SyncReport:
        """Make the deployment's schedules match `rows` (every schedules row). Raises when
        Prefect or the deployment cannot be reached; a row Prefect refuses counts failed."""
        report = SyncReport()
        existing = {s.slug: s for s in self.client.read_deployment_schedules(self.deployment_id())}
        wanted = {str(row["id"]): row for row in rows}
        for schedule_id, row in wanted.items():
            found = existing.get(schedule_id)
            try:
                if found is not None and in_step(row, found):
                    report.prefect_ids[schedule_id] = str(found.id)
                    continue
                schedule = prefect_schedule(Rule.from_row(row))
                if found is None:
                    report.prefect_ids[schedule_id] = self._create(row, schedule)
                    report.created += 1
                else:
                    self._update(str(found.id), row, schedule)
                    report.prefect_ids[schedule_id] = str(found.id)
                    report.updated += 1
            except Exception as exc:
                report.failed += 1
                logger.warning(
                    "could not write a schedule to Prefect",
                    extra={"schedule_id": schedule_id, "error": f"{type(exc).__name__}: {exc}"},
                )
        for slug, orphan in existing.items():
            if _is_schedule_id(slug) and slug not in wanted:
                try:
                    self.client.delete_deployment_schedule(self.deployment_id(), orphan.id)
                    report.deleted += 1
                except ObjectNotFound:
                    pass
        if report.created or report.updated or report.deleted:
            self._schedule_now()
        return report

    def close(self) -> None:
        """Close the client if this object opened it."""
        with self._lock:
            if self._owns_client and self._client is not None:
                self._client.__exit__(None, None, None)
                self._client = None
