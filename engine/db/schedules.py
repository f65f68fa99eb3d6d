"""The store of recurring schedules, public.schedules (migration 20261207001000).

Two paths, as for jobs (engine.db.pool): the API reads and changes a user's schedules on the
user path (`claims`: role `authenticated`, so RLS confines every statement to the caller's own
rows and another user's schedule is simply not found); the engine (the Prefect sync pass,
operator schedules, the firing flow) uses the service path (`claims=None`). Every statement is
a bound-parameter query from engine/db/sql/schedule_*.sql.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from engine.db.pool import query
from engine.db.rows import Row
from engine.errors import NotFoundError

#: The columns a user may write (the column grants of the migration), with their defaults.
WRITABLE_DEFAULTS: dict[str, Any] = {
    "name": None,
    "workflow_version": None,
    "kind": None,
    "cron": None,
    "interval_seconds": None,
    "rrule": None,
    "timezone": "UTC",
    "input_data": {},
    "active": True,
    "catch_up": "latest",
}


class UnknownScheduleOwnerError(NotFoundError):
    """The would-be owner of a schedule is not in auth.users (deleted, token still valid)."""


@dataclass(frozen=True)
class NewSchedule:
    """What a schedule is created with (the API checked it: engine.jobs.schedule_rules)."""

    workflow_id: str
    kind: str
    user_id: str | None = None
    name: str | None = None
    workflow_version: int | None = None
    cron: str | None = None
    interval_seconds: float | None = None
    rrule: str | None = None
    timezone: str = "UTC"
    input_data: dict[str, Any] = field(default_factory=dict)
    active: bool = True
    catch_up: str = "latest"

    def params(self) -> dict[str, Any]:
        """The bound parameters of schedule_insert.sql."""
        return {
            "user_id": self.user_id,
            "name": self.name,
            "workflow_id": self.workflow_id,
            "workflow_version": self.workflow_version,
            "kind": self.kind,
            "cron": self.cron,
            "interval_seconds": self.interval_seconds,
            "rrule": self.rrule,
            "timezone": self.timezone,
            "input_data": Jsonb(self.input_data),
            "active": self.active,
            "catch_up": self.catch_up,
        }


def _not_found(schedule_id: str) -> NotFoundError:
    return NotFoundError(f"schedule '{schedule_id}' not found")


class ScheduleStore:
    """Creates, reads, changes and deletes schedules through a pool (a JobStore's `pool`)."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Row]]) -> None:
        self.pool = pool

    @contextmanager
    def _conn(self, claims: Mapping[str, Any] | None) -> Iterator[psycopg.Connection[Row]]:
        """A connection in one transaction: as the user of `claims`, or as the service."""
        with self.pool.connection() as conn, conn.transaction():
            if claims is not None:
                conn.execute(query("user_session_begin"), {"claims": json.dumps(dict(claims))})
            yield conn

    def create(self, new: NewSchedule, claims: Mapping[str, Any] | None = None) -> Row:
        """Insert a schedule; the whole row. On the user path RLS refuses another owner.

        NotFoundError when the workflow (or the pinned version) does not exist,
        UnknownScheduleOwnerError when the owner is not in auth.users.
        """
        try:
            with self._conn(claims) as conn:
                row = conn.execute(query("schedule_insert"), new.params()).fetchone()
        except psycopg.errors.ForeignKeyViolation as exc:
            constraint = exc.diag.constraint_name or ""
            if constraint == "schedules_user_id_fkey":
                raise UnknownScheduleOwnerError(f"user '{new.user_id}' does not exist") from None
            if constraint == "schedules_workflow_version_fkey":
                raise NotFoundError(
                    f"workflow '{new.workflow_id}' has no version {new.workflow_version}"
                ) from None
            raise NotFoundError(f"workflow '{new.workflow_id}' does not exist") from None
        assert row is not None  # an insert ... returning always returns its row
        return row

    def get(self, schedule_id: str, claims: Mapping[str, Any] | None = None) -> Row:
        """One schedule; NotFoundError when missing or, on the user path, another's."""
        with self._conn(claims) as conn:
            row = conn.execute(query("schedule_get"), {"schedule_id": schedule_id}).fetchone()
        if row is None:
            raise _not_found(schedule_id)
        return row

    def list_for_user(
        self,
        claims: Mapping[str, Any],
        *,
        limit: int,
        workflow_id: str | None = None,
        cursor: tuple[datetime, str] | None = None,
    ) -> list[Row]:
        """The caller's schedules, newest first; `cursor` is the last (created_at, id)."""
        params = {
            "user_id": claims.get("sub"),
            "limit": limit,
            "workflow_id": workflow_id,
            "cursor_at": cursor[0] if cursor else None,
            "cursor_id": cursor[1] if cursor else None,
        }
        with self._conn(claims) as conn:
            return conn.execute(query("schedule_list"), params).fetchall()

    def update(
        self,
        schedule_id: str,
        change: Callable[[Row], Mapping[str, Any]],
        claims: Mapping[str, Any] | None = None,
    ) -> tuple[Row, Row]:
        """Change a schedule in one transaction: the row is locked, `change(row)` returns the
        user-writable fields to set (WRITABLE_DEFAULTS' keys; missing ones keep their value)
        and may raise to refuse (nothing is written). The rows (before, after).

        NotFoundError when missing or, on the user path, another user's.
        """
        with self._conn(claims) as conn:
            before = conn.execute(query("schedule_lock"), {"schedule_id": schedule_id}).fetchone()
            if before is None:
                raise _not_found(schedule_id)
            fields = {key: before[key] for key in WRITABLE_DEFAULTS}
            fields.update(change(before))
            params = {**fields, "input_data": Jsonb(fields["input_data"])}
            after = conn.execute(
                query("schedule_update"), {**params, "schedule_id": schedule_id}
            ).fetchone()
        assert after is not None  # the row is locked: it is still there
        return before, after

    def delete(self, schedule_id: str, claims: Mapping[str, Any] | None = None) -> Row:
        """Delete a schedule; the deleted row. NotFoundError when missing or another's."""
        with self._conn(claims) as conn:
            row = conn.execute(query("schedule_delete"), {"schedule_id": schedule_id}).fetchone()
        if row is None:
            raise _not_found(schedule_id)
        return row

    def set_prefect_schedule_id(self, schedule_id: str, prefect_schedule_id: str | None) -> bool:
        """Record the id of the row's Prefect deployment schedule (None: it has none); False
        when the row is gone (deleted meanwhile). Service path."""
        params = {"schedule_id": schedule_id, "prefect_schedule_id": prefect_schedule_id}
        with self._conn(None) as conn:
            return conn.execute(query("schedule_set_prefect_id"), params).fetchone() is not None

    def all(self) -> list[Row]:
        """Every schedule, oldest first (service path: the Prefect sync pass)."""
        with self._conn(None) as conn:
            return conn.execute(query("schedule_all")).fetchall()
