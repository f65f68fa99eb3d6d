"""What one firing of a schedule does: the catch-up rule and the firing's idempotency key.

Prefect's scheduler creates a schedule's flow runs ahead of time, each Scheduled for one
firing time. When everything was down (Prefect, the workers), the runs it created pile up as
Late and all start when a worker returns. Each run decides on its own, from its scheduled
time, the time now and the schedule row:

- a firing at most `grace` late (setting SCHEDULE_MISFIRE_GRACE_SECONDS, default 300) fires;
- a later one is missed (no job, outcome `missed`), unless the schedule's `catch_up` is
  `latest` (the default) and it is the schedule's latest due firing (its next firing time
  is still ahead): that one fires, once, so an outage costs at most one catch-up job per
  schedule; with `catch_up` `none` every firing past the grace is missed;
- a paused or deleted schedule fires nothing (outcome `inactive`).

A firing that fires creates its job with the key `schedule:<schedule id>:<time>`, so the same
firing twice (Prefect firing twice, two schedulers, a restarted run) finds the same job.

A firing whose flow run never ran (Prefect dropped it when another schedule of the deployment
changed) or crashed has no job: the maintenance pass backfills the schedule's latest due
firing (`needs_backfill`: the same rule, applied to the latest due firing) under that key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

#: How late a firing may start and still fire (SCHEDULE_MISFIRE_GRACE_SECONDS).
DEFAULT_MISFIRE_GRACE_SECONDS = 300.0
KEY_PREFIX = "schedule:"


class Decision(StrEnum):
    """What a firing does."""

    FIRE = "fire"
    MISSED = "missed"
    INACTIVE = "inactive"


@dataclass(frozen=True)
class Firing:
    """One firing as its flow run sees it: scheduled for `scheduled_for`, starting `now`.

    `next_after` is the schedule's next firing time after `scheduled_for` (None: there is
    none, or it is unknown); `catch_up` is the row's policy ('latest' or 'none').
    """

    scheduled_for: datetime
    now: datetime
    active: bool
    catch_up: str = "latest"
    next_after: datetime | None = None
    grace_seconds: float = DEFAULT_MISFIRE_GRACE_SECONDS

    @property
    def lateness_seconds(self) -> float:
        """How long after its scheduled time the firing started (negative: early)."""
        return (self.now - self.scheduled_for).total_seconds()


def decide(firing: Firing) -> Decision:
    """The catch-up rule (see the module docstring)."""
    if not firing.active:
        return Decision.INACTIVE
    if firing.lateness_seconds <= firing.grace_seconds:
        return Decision.FIRE
    latest_due = firing.next_after is None or firing.next_after > firing.now
    if firing.catch_up == "latest" and latest_due:
        return Decision.FIRE
    return Decision.MISSED


def firing_time_text(scheduled_for: datetime) -> str:
    """The scheduled time as the key writes it: ISO 8601 in UTC (a naive time is UTC)."""
    moment = scheduled_for if scheduled_for.tzinfo else scheduled_for.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def firing_key(schedule_id: str, scheduled_for: datetime) -> str:
    """The idempotency key of the job of one firing: `schedule:<id>:<time, ISO UTC>`."""
    return f"{KEY_PREFIX}{schedule_id}:{firing_time_text(scheduled_for)}"


#: How long after its time a firing is left to its own flow run before the maintenance
#: pass backfills it (at most half the grace, so a catch_up 'none' firing still can be).
BACKFILL_SETTLE_SECONDS = 60.0


def backfill_bound(created_at: datetime, updated_at: datetime | None) -> datetime:
    """The earliest firing a backfill may make: just after the row was created or last
    changed, so a resumed or edited schedule never fires a time from before, nor an
    interval schedule its anchor (created_at: Prefect, given the schedule after that
    moment, never runs it either)."""
    return max(created_at, updated_at or created_at) + timedelta(microseconds=1)


def needs_backfill(
    latest_due: datetime | None,
    *,
    now: datetime,
    catch_up: str,
    last_fired_for: datetime | None,
    grace_seconds: float = DEFAULT_MISFIRE_GRACE_SECONDS,
    settle_seconds: float = BACKFILL_SETTLE_SECONDS,
) -> bool:
    """Whether the maintenance pass should make the schedule's latest due firing, when its
    job may be missing: it is due, its own flow run had `settle_seconds` (at most half the
    grace) to fire it, the schedule has not recorded it or a later one, and the catch-up
    rule (`decide`) would fire it (the latest due firing: within the grace, or any age
    with catch_up 'latest')."""
    if latest_due is None:
        return False
    if last_fired_for is not None and last_fired_for >= latest_due:
        return False
    firing = Firing(
        scheduled_for=latest_due,
        now=now,
        active=True,
        catch_up=catch_up,
        grace_seconds=grace_seconds,
    )
    if firing.lateness_seconds < min(settle_seconds, grace_seconds / 2):
        return False
    return decide(firing) is Decision.FIRE
