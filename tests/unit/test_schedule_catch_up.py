"""The catch-up rule of schedule firings and the firing's idempotency key (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.jobs.schedule_firing import (
    Decision,
    Firing,
    decide,
    firing_key,
)

T = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
GRACE = 300.0


def _at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


# (case, seconds late, catch_up, next firing after T in seconds (None: none known), active,
#  decision)
CASES = [
    ("on time", 0.2, "latest", 60, True, Decision.FIRE),
    ("early (clock skew)", -1.0, "latest", 60, True, Decision.FIRE),
    ("late within the grace", 299, "none", 60, True, Decision.FIRE),
    ("at the grace exactly", 300, "none", 60, True, Decision.FIRE),
    ("past the grace, a later firing due, latest", 900, "latest", 600, True, Decision.MISSED),
    ("past the grace, the latest due firing, latest", 900, "latest", 3600, True, Decision.FIRE),
    ("past the grace, next firing unknown, latest", 900, "latest", None, True, Decision.FIRE),
    ("past the grace, the latest due firing, none", 900, "none", 3600, True, Decision.MISSED),
    ("past the grace, a later firing due, none", 900, "none", 600, True, Decision.MISSED),
    ("next firing exactly now counts as due", 900, "latest", 900, True, Decision.MISSED),
    ("paused, on time", 0, "latest", 60, False, Decision.INACTIVE),
    ("paused, late", 900, "latest", 3600, False, Decision.INACTIVE),
]


@pytest.mark.parametrize(
    ("late", "catch_up", "next_after", "active", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_catch_up_rule(
    late: float, catch_up: str, next_after: float | None, active: bool, expected: Decision
) -> None:
    """A firing within the grace fires; past it, only the latest due firing of a 'latest'
    schedule fires (once), every other is missed; a paused schedule fires nothing."""
    firing = Firing(
        scheduled_for=T,
        now=_at(late),
        active=active,
        catch_up=catch_up,
        next_after=None if next_after is None else _at(next_after),
        grace_seconds=GRACE,
    )
    assert decide(firing) is expected


def test_an_outage_costs_one_catch_up_job_per_schedule() -> None:
    """An hourly schedule down for ten hours: its ten firings run together 15 minutes after
    the last one was due. With 'latest' only that last one fires, with 'none' none does."""
    hour = 3600
    now = _at(9 * hour + 900)
    times = [_at(i * hour) for i in range(10)]
    for catch_up, fired in (("latest", [times[-1]]), ("none", [])):
        decisions = [
            decide(
                Firing(
                    scheduled_for=t,
                    now=now,
                    active=True,
                    catch_up=catch_up,
                    next_after=t + timedelta(seconds=hour),
                    grace_seconds=GRACE,
                )
            )
            for t in times
        ]
        assert [t for t, d in zip(times, decisions, strict=True) if d is Decision.FIRE] == fired
        assert decisions.count(Decision.MISSED) == len(times) - len(fired)


# (scheduled time, key text)
KEYS = [
    (T, "schedule:S:2026-12-07T03:00:00+00:00"),
    (T.replace(microsecond=250000), "schedule:S:2026-12-07T03:00:00.250000+00:00"),
    (T.astimezone(timezone(timedelta(hours=2))), "schedule:S:2026-12-07T03:00:00+00:00"),
    (T.replace(tzinfo=None), "schedule:S:2026-12-07T03:00:00+00:00"),
]


@pytest.mark.parametrize(("scheduled_for", "key"), KEYS)
def test_firing_key(scheduled_for: datetime, key: str) -> None:
    """The key is the schedule id and the scheduled time in UTC, whatever zone it came in."""
    assert firing_key("S", scheduled_for) == key
