"""A schedule's latest due firing (as Prefect's scheduler dates it) and whether the maintenance
backfill makes it (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.jobs.schedule_firing import backfill_bound, needs_backfill
from engine.schedule_rules import Rule, latest_run_at_or_before, next_run_after

NOW = datetime(2026, 12, 8, 1, 0, 30, tzinfo=UTC)
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# (case, rule, not_before, expected latest due firing)
CASES = [
    (
        "cron in Berlin: 03:00 local is 02:00 UTC in winter",
        Rule(kind="cron", cron="0 3 * * *", timezone="Europe/Berlin"),
        LONG_AGO,
        _utc(2026, 12, 7, 2, 0),
    ),
    (
        "cron every 5 minutes in New York: the last one, seconds ago",
        Rule(kind="cron", cron="*/5 * * * *", timezone="America/New_York"),
        LONG_AGO,
        _utc(2026, 12, 8, 1, 0),
    ),
    (
        "cron at 09:30 in Kolkata (a half-hour offset)",
        Rule(kind="cron", cron="30 9 * * *", timezone="Asia/Kolkata"),
        LONG_AGO,
        _utc(2026, 12, 7, 4, 0),
    ),
    (
        "cron: a firing exactly now is due",
        Rule(kind="cron", cron="0 1 * * *"),
        LONG_AGO,
        _utc(2026, 12, 8, 1, 0),
    ),
    (
        "interval hourly, anchored at created_at (to the microsecond)",
        Rule(kind="interval", interval_seconds=3600, anchor=_utc(2026, 12, 7, 10, 17, 30, 123456)),
        LONG_AGO,
        _utc(2026, 12, 8, 0, 17, 30, 123456),
    ),
    (
        "interval daily in Berlin from a summer anchor keeps the local hour (12:00)",
        Rule(
            kind="interval",
            interval_seconds=86400,
            timezone="Europe/Berlin",
            anchor=_utc(2026, 6, 7, 10, 0),
        ),
        LONG_AGO,
        _utc(2026, 12, 7, 11, 0),
    ),
    (
        "rrule weekly on Mondays 09:00 in Tokyo",
        Rule(kind="rrule", rrule="FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0", timezone="Asia/Tokyo"),
        LONG_AGO,
        _utc(2026, 12, 7, 0, 0),
    ),
    (
        "rrule that ended long ago: nothing due since",
        Rule(kind="rrule", rrule="FREQ=DAILY;COUNT=3"),
        LONG_AGO,
        None,
    ),
    (
        "created after the last firing: nothing due yet",
        Rule(kind="cron", cron="0 3 * * *"),
        _utc(2026, 12, 7, 10, 0),
        None,
    ),
    (
        "created before the last firing: that firing",
        Rule(kind="cron", cron="0 3 * * *"),
        _utc(2026, 12, 7, 2, 59),
        _utc(2026, 12, 7, 3, 0),
    ),
    (
        "interval created now: its first firing is now, not earlier",
        Rule(kind="interval", interval_seconds=60, anchor=NOW),
        NOW,
        NOW,
    ),
    (
        "interval created in a second: nothing due yet",
        Rule(kind="interval", interval_seconds=60, anchor=NOW + timedelta(seconds=1)),
        NOW + timedelta(seconds=1),
        None,
    ),
]


@pytest.mark.parametrize(
    ("rule", "not_before", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_latest_due_firing(rule: Rule, not_before: datetime, expected: datetime | None) -> None:
    """The latest firing at or before now and not before the bound is the date Prefect's
    scheduler gives that firing (the next one after it is in the future)."""
    found = latest_run_at_or_before(rule, NOW, not_before)
    assert found == expected
    if found is not None:
        assert next_run_after(rule, found - timedelta(microseconds=1)) == found
        after = next_run_after(rule, found)
        assert after is None or after > NOW


def test_latest_due_firing_of_a_schedule_firing_every_second() -> None:
    """A rule with more than Prefect's 1000 dates per call in the looked-back span still gives
    the latest one (a six-field cron firing every second, created hours ago)."""
    rule = Rule(kind="cron", cron="* * * * * *")
    found = latest_run_at_or_before(rule, NOW, NOW - timedelta(hours=3))
    assert found == NOW


# (case, seconds late (None: nothing due), catch_up, last fired (seconds after the firing,
#  None: never), backfill?)
BACKFILL_CASES = [
    ("nothing due", None, "latest", None, False),
    ("its own run still has time", 30, "latest", None, False),
    ("after the settle, within the grace", 90, "none", None, True),
    ("at the grace exactly", 300, "none", None, True),
    ("past the grace, catch_up none: missed", 301, "none", None, False),
    ("past the grace, catch_up latest: the latest due fires", 7200, "latest", None, True),
    ("already fired (recorded on the row)", 90, "latest", 0, False),
    ("a later firing recorded", 90, "latest", 60, False),
    ("an earlier firing recorded only", 90, "latest", -3600, True),
]


@pytest.mark.parametrize(
    ("late", "catch_up", "last_fired", "expected"),
    [case[1:] for case in BACKFILL_CASES],
    ids=[case[0] for case in BACKFILL_CASES],
)
def test_backfill_rule(
    late: float | None, catch_up: str, last_fired: float | None, expected: bool
) -> None:
    """The backfill makes the latest due firing as the catch-up rule would fire it, after
    leaving its own run a minute, unless the row already recorded it or a later one."""
    due = None if late is None else NOW - timedelta(seconds=late)
    fired = None if due is None or last_fired is None else due + timedelta(seconds=last_fired)
    wanted = needs_backfill(
        due, now=NOW, catch_up=catch_up, last_fired_for=fired, grace_seconds=300
    )
    assert wanted is expected


def test_backfill_bound_is_just_after_the_last_change() -> None:
    """A resumed or edited schedule (updated_at later) never backfills a time before that,
    and an interval schedule never its anchor, created_at itself."""
    created = _utc(2026, 12, 1, 0, 0)
    tick = timedelta(microseconds=1)
    assert backfill_bound(created, None) == created + tick
    assert backfill_bound(created, created) == created + tick
    assert backfill_bound(created, _utc(2026, 12, 7, 12, 0)) == _utc(2026, 12, 7, 12, 0) + tick
    anchored = Rule(kind="interval", interval_seconds=3600, anchor=NOW)
    assert latest_run_at_or_before(anchored, NOW, backfill_bound(NOW, NOW)) is None


def test_a_small_grace_shortens_the_settle() -> None:
    """With a grace of 60 s, the firing's own run gets 30 s, so the backfill can still make a
    catch_up 'none' firing within the grace."""
    due = NOW - timedelta(seconds=40)
    assert needs_backfill(due, now=NOW, catch_up="none", last_fired_for=None, grace_seconds=60)


# (case, rule, now, expected): around daylight saving changes, Prefect's dates decide.
DST_CASES = [
    (
        "Berlin spring forward: 02:30 does not exist that day, the day before's fired",
        Rule(kind="cron", cron="30 2 * * *", timezone="Europe/Berlin"),
        _utc(2026, 3, 29, 1, 0),
        _utc(2026, 3, 28, 1, 30),
    ),
    (
        "Berlin fall back: 02:30 happens twice, Prefect fires the first",
        Rule(kind="cron", cron="30 2 * * *", timezone="Europe/Berlin"),
        _utc(2026, 10, 25, 1, 45),
        _utc(2026, 10, 25, 0, 30),
    ),
    (
        "New York fall back, hourly: the repeated 01:00 (06:00 UTC) is not a Prefect date",
        Rule(kind="cron", cron="0 * * * *", timezone="America/New_York"),
        _utc(2026, 11, 1, 6, 30),
        _utc(2026, 11, 1, 5, 0),
    ),
    (
        "daily interval in Berlin keeps 02:30 local across spring forward",
        Rule(
            kind="interval",
            interval_seconds=86400,
            timezone="Europe/Berlin",
            anchor=_utc(2026, 3, 1, 1, 30),
        ),
        _utc(2026, 3, 30, 0, 45),
        _utc(2026, 3, 29, 1, 30),
    ),
]


@pytest.mark.parametrize(
    ("rule", "now", "expected"),
    [case[1:] for case in DST_CASES],
    ids=[case[0] for case in DST_CASES],
)
def test_latest_due_firing_around_daylight_saving_changes(
    rule: Rule, now: datetime, expected: datetime
) -> None:
    """Where croniter's previous wall time and Prefect's dates differ, the latest due firing
    is Prefect's (so its key is the one the firing's own run would use)."""
    found = latest_run_at_or_before(rule, now, LONG_AGO)
    assert found == expected
    assert next_run_after(rule, found - timedelta(microseconds=1)) == found
    assert next_run_after(rule, found) is not None and next_run_after(rule, found) > now  # type: ignore[operator]
