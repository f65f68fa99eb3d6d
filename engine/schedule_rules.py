"""A recurring schedule's rule: checking it, its next firing, and its Prefect form (pure).

A schedule fires on exactly one of a cron expression, a fixed interval or an RRule, read in an
IANA timezone. What this module accepts is exactly what Prefect accepts, because it uses
Prefect's own schedule models to check: the cron expression through Prefect's CronSchedule
(its vendored croniter, refusing the random and hashed forms), the RRule through
RRuleSchedule (dateutil's rrulestr, at most its maximum length), the timezone through
Prefect's list of IANA names. A rule the API stores is therefore one Prefect takes, and
`next_run_after` is the date Prefect's scheduler computes (its server-side models), as is
`latest_run_at_or_before` (a schedule's latest due firing, for the maintenance backfill).

No I/O here; with engine.dispatch and engine.prefect_private, this and engine.schedule_sync
are the engine modules that import Prefect (import-linter, pyproject.toml).
"""

from __future__ import annotations

import math
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from prefect.client.schemas import schedules as client_schedules
from prefect.server.schemas import schedules as server_schedules
from pydantic import ValidationError

from engine.errors import Problem
from engine.prefect_private import cron_iterator

ScheduleKind = Literal["cron", "interval", "rrule"]
KINDS: tuple[ScheduleKind, ...] = ("cron", "interval", "rrule")
#: The request field that carries each kind's rule.
FIELD_OF_KIND: dict[ScheduleKind, str] = {
    "cron": "cron",
    "interval": "interval_seconds",
    "rrule": "rrule",
}
#: Where an interval schedule's firings are counted from when it has no anchor of its own.
DEFAULT_ANCHOR = datetime(2020, 1, 1, tzinfo=UTC)
#: Longest cron expression stored (the migration's check).
MAX_CRON_LENGTH = 200
#: Longest RRule stored (the migration's check; Prefect's own limit is larger).
MAX_RRULE_LENGTH = 2000
#: Dates Prefect's schedules compute in one call at most.
PREFECT_MAX_DATES = server_schedules.MAX_ITERATIONS

PrefectSchedule = (
    client_schedules.CronSchedule
    | client_schedules.IntervalSchedule
    | client_schedules.RRuleSchedule
)


@dataclass(frozen=True)
class Rule:
    """A checked rule: its kind, that kind's field, the timezone, and (interval) the anchor."""

    kind: ScheduleKind
    cron: str | None = None
    interval_seconds: float | None = None
    rrule: str | None = None
    timezone: str = "UTC"
    #: An interval schedule fires at anchor + k * interval (the row's created_at).
    anchor: datetime = DEFAULT_ANCHOR

    @classmethod
    def from_row(cls, row: Any) -> Rule:
        """The rule of a schedules row (a mapping with the table's columns)."""
        return cls(
            kind=row["kind"],
            cron=row["cron"],
            interval_seconds=row["interval_seconds"],
            rrule=row["rrule"],
            timezone=row["timezone"],
            anchor=row.get("created_at") or DEFAULT_ANCHOR,
        )


def _first_error(exc: ValidationError) -> str:
    """The message of a pydantic error without pydantic's "Value error, " prefix."""
    message = str(exc.errors()[0].get("msg", "not valid"))
    return message.removeprefix("Value error, ")


def kind_problems(
    cron: str | None, interval_seconds: float | None, rrule: str | None
) -> tuple[ScheduleKind | None, list[Problem]]:
    """The kind the set fields make (exactly one of cron, interval_seconds, rrule), or
    None with a problem naming the fields."""
    values: dict[ScheduleKind, object] = {
        "cron": cron,
        "interval": interval_seconds,
        "rrule": rrule,
    }
    given = [kind for kind in KINDS if values[kind] is not None]
    if len(given) == 1:
        return given[0], []
    names = ", ".join(FIELD_OF_KIND[k] for k in KINDS)
    if not given:
        return None, [Problem("cron", f"exactly one of {names} is required")]
    message = f"exactly one of {names} may be set, not " + " and ".join(
        FIELD_OF_KIND[k] for k in given
    )
    return None, [Problem(FIELD_OF_KIND[k], message) for k in given]


def timezone_problem(timezone: str) -> str | None:
    """Why `timezone` is not an IANA time zone name Prefect knows, or None."""
    if not client_schedules.is_valid_timezone(timezone):
        return f"'{timezone[:64]}' is not an IANA time zone name (e.g. 'Europe/Berlin')"
    return None


def cron_problem(cron: str) -> str | None:
    """Why Prefect would refuse the cron expression, or None."""
    if len(cron) > MAX_CRON_LENGTH:
        return f"longer than {MAX_CRON_LENGTH} characters"
    try:
        client_schedules.CronSchedule(cron=cron)
    except ValidationError as exc:
        return _first_error(exc)
    return None


def rrule_problem(rrule: str) -> str | None:
    """Why Prefect would refuse the RRule, or None."""
    if len(rrule) > MAX_RRULE_LENGTH:
        return f"longer than {MAX_RRULE_LENGTH} characters"
    try:
        client_schedules.RRuleSchedule(rrule=rrule)
    except (ValidationError, ValueError, TypeError) as exc:
        return _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
    return None


def interval_problem(interval_seconds: float, minimum: float) -> str | None:
    """Why the interval is not allowed (below the minimum, or not finite), or None."""
    if not math.isfinite(interval_seconds):
        return "must be a finite number of seconds"
    if interval_seconds < minimum:
        return f"must be at least {minimum:g} seconds (MIN_SCHEDULE_INTERVAL_SECONDS)"
    return None


def check_rule(
    *,
    cron: str | None,
    interval_seconds: float | None,
    rrule: str | None,
    timezone: str,
    min_interval_seconds: float,
    anchor: datetime = DEFAULT_ANCHOR,
) -> tuple[Rule | None, list[Problem]]:
    """The rule these fields make, or None and every problem, each naming its field
    (`cron`, `interval_seconds`, `rrule`, `timezone`)."""
    kind, problems = kind_problems(cron, interval_seconds, rrule)
    tz_problem = timezone_problem(timezone)
    if tz_problem is not None:
        problems.append(Problem("timezone", tz_problem))
    if kind == "cron" and cron is not None and (why := cron_problem(cron)):
        problems.append(Problem("cron", why))
    if kind == "rrule" and rrule is not None and (why := rrule_problem(rrule)):
        problems.append(Problem("rrule", why))
    if (
        kind == "interval"
        and interval_seconds is not None
        and (why := interval_problem(interval_seconds, min_interval_seconds))
    ):
        problems.append(Problem("interval_seconds", why))
    if problems or kind is None:
        return None, problems
    rule = Rule(
        kind=kind,
        cron=cron,
        interval_seconds=interval_seconds,
        rrule=rrule,
        timezone=timezone,
        anchor=anchor,
    )
    return rule, []


def prefect_schedule(rule: Rule) -> PrefectSchedule:
    """The rule as Prefect's client schedule (what a DeploymentSchedule is created with)."""
    if rule.kind == "cron":
        return client_schedules.CronSchedule(cron=str(rule.cron), timezone=rule.timezone)
    if rule.kind == "rrule":
        return client_schedules.RRuleSchedule(rrule=str(rule.rrule), timezone=rule.timezone)
    return client_schedules.IntervalSchedule(
        interval=timedelta(seconds=float(rule.interval_seconds or 0)),
        anchor_date=rule.anchor,
        timezone=rule.timezone,
    )


def _await_free(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """The result of a coroutine that never awaits (Prefect's get_dates computes only)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the coroutine awaited")


def next_run_after(rule: Rule, after: datetime) -> datetime | None:
    """The first firing strictly after `after` (UTC), as Prefect's scheduler computes it;
    None when the rule fires no more (an RRule with an end)."""
    parsed = _server_schedule(rule)
    dates = _await_free(parsed.get_dates(n=1, start=after + timedelta(microseconds=1)))
    return dates[0].astimezone(UTC) if dates else None


def _server_schedule(rule: Rule) -> Any:
    """The rule as Prefect's server-side schedule (the one its scheduler computes with)."""
    server_kind: Any = {
        "cron": server_schedules.CronSchedule,
        "interval": server_schedules.IntervalSchedule,
        "rrule": server_schedules.RRuleSchedule,
    }[rule.kind]
    return server_kind.model_validate(prefect_schedule(rule).model_dump())


def _previous_guess(rule: Rule, now: datetime) -> datetime:
    """A first guess at a cron or interval rule's last firing at or before `now`: croniter's
    previous wall time in the row's timezone (cron), the anchor plus whole intervals
    (interval). Only a guess: Prefect's dates decide."""
    if rule.kind == "cron":
        zone = ZoneInfo(rule.timezone)
        local_now = now.astimezone(zone).replace(tzinfo=None)
        wall = cron_iterator(str(rule.cron), local_now)  # type: ignore[no-untyped-call]
        previous: datetime = wall.get_prev(datetime)  # type: ignore[no-untyped-call]
        return previous.replace(tzinfo=zone).astimezone(UTC)
    step = timedelta(seconds=float(rule.interval_seconds or 0))
    anchor = rule.anchor if rule.anchor.tzinfo else rule.anchor.replace(tzinfo=UTC)
    return anchor + step * max(0, (now - anchor) // step)


def _rrule_latest(parsed: Any, rule: Rule, now: datetime) -> datetime | None:
    """dateutil's `before` on the very RRule Prefect's scheduler walks (its `to_rrule`), so
    exactly Prefect's date. dateutil cannot seek: this walks once from the rule's start
    (2020-01-01 unless it names a DTSTART), where each Prefect date query would walk again."""
    zone = ZoneInfo(rule.timezone)
    found: datetime | None = parsed.to_rrule().before(now.astimezone(zone), inc=True)
    return found.astimezone(UTC) if found is not None else None


def _last_date_between(parsed: Any, start: datetime, end: datetime) -> datetime | None:
    """Prefect's last date of the schedule in [start, end], or None."""
    last: datetime | None = None
    while True:
        dates: list[datetime] = _await_free(
            parsed.get_dates(n=PREFECT_MAX_DATES, start=start, end=end)
        )
        if not dates:
            return last
        last = dates[-1].astimezone(UTC)
        if len(dates) < PREFECT_MAX_DATES:
            return last
        start = last + timedelta(microseconds=1)  # Prefect checks at most 1000 a call


def latest_run_at_or_before(rule: Rule, now: datetime, not_before: datetime) -> datetime | None:
    """The rule's latest firing at or before `now` and not before `not_before` (UTC), exactly
    as Prefect's scheduler dates it (so its job key matches the flow run's); None when the
    rule has none in that span (nothing due yet, or an RRule that ended)."""
    parsed = _server_schedule(rule)
    if rule.kind == "rrule":
        found = _rrule_latest(parsed, rule, now)
        return found if found is not None and found >= not_before else None
    span = max(now - _previous_guess(rule, now), timedelta(seconds=1))
    # Look back from the guess, doubling the span, until Prefect has a date in it: its last
    # one is the answer even when the guess and Prefect differ (a DST edge).
    while True:
        start = max(now - span, not_before)
        found = _last_date_between(parsed, start, now)
        if found is not None or start <= not_before:
            return found
        span *= 2
