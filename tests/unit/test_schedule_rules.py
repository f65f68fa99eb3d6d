"""The checks of a schedule's rule (engine.schedule_rules), table-driven: exactly one of cron,
interval_seconds and rrule; a cron expression and an RRule Prefect accepts; an IANA timezone;
an interval not below the minimum; and the next firing as Prefect's scheduler computes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.schedule_rules import Rule, check_rule, next_run_after, prefect_schedule

NOW = datetime(2026, 12, 7, 23, 30, 15, tzinfo=UTC)


def problems(**fields: Any) -> dict[str, str]:
    """The problems of a rule (location -> message), minimum interval 60 s."""
    values: dict[str, Any] = {
        "cron": None,
        "interval_seconds": None,
        "rrule": None,
        "timezone": "UTC",
        **fields,
    }
    rule, found = check_rule(min_interval_seconds=60, **values)
    assert (rule is None) == bool(found)
    return {p.location: p.message for p in found}


@pytest.mark.parametrize(
    "fields",
    [
        {"cron": "*/5 * * * *"},
        {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
        {"cron": "@hourly"},
        {"interval_seconds": 60},
        {"interval_seconds": 86400.5, "timezone": "America/New_York"},
        {"rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"},
        {"rrule": "DTSTART:20260101T090000\nRRULE:FREQ=DAILY;COUNT=3"},
    ],
)
def test_good_rules_pass(fields: dict[str, Any]) -> None:
    """Well-formed rules of each kind, in any IANA timezone, have no problem."""
    assert problems(**fields) == {}


@pytest.mark.parametrize(
    ("fields", "location", "says"),
    [
        ({}, "cron", "exactly one of"),
        ({"cron": "* * * * *", "interval_seconds": 60}, "interval_seconds", "not cron and"),
        ({"cron": "not a cron"}, "cron", "Invalid cron string"),
        ({"cron": "61 * * * *"}, "cron", "Invalid cron string"),
        ({"cron": "H * * * *"}, "cron", ""),
        ({"cron": "* " * 150}, "cron", "longer than 200"),
        ({"rrule": "FREQ=SOMETIMES"}, "rrule", "Invalid RRule"),
        ({"rrule": "FREQ=DAILY;" + "BYHOUR=1;" * 300}, "rrule", "longer than 2000"),
        ({"interval_seconds": 59.9}, "interval_seconds", "at least 60"),
        ({"interval_seconds": float("inf")}, "interval_seconds", "finite"),
        ({"interval_seconds": float("nan")}, "interval_seconds", "finite"),
        ({"cron": "* * * * *", "timezone": "Mars/Base"}, "timezone", "IANA"),
        ({"cron": "* * * * *", "timezone": "+02:00"}, "timezone", "IANA"),
    ],
)
def test_bad_rules_name_their_field(fields: dict[str, Any], location: str, says: str) -> None:
    """Each bad rule has a problem at its own field, saying why."""
    found = problems(**fields)
    assert location in found, found
    assert says in found[location]


def test_the_minimum_is_the_callers() -> None:
    """The minimum interval is a parameter (the setting MIN_SCHEDULE_INTERVAL_SECONDS)."""
    rule, found = check_rule(
        cron=None, interval_seconds=2, rrule=None, timezone="UTC", min_interval_seconds=2
    )
    assert found == [] and rule is not None and rule.kind == "interval"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (Rule(kind="cron", cron="*/5 * * * *"), datetime(2026, 12, 7, 23, 35, tzinfo=UTC)),
        # 09:00 in Berlin (UTC+1 in December) is 08:00 UTC.
        (
            Rule(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"),
            datetime(2026, 12, 8, 8, 0, tzinfo=UTC),
        ),
        (
            Rule(kind="interval", interval_seconds=600, anchor=NOW - timedelta(seconds=30)),
            NOW + timedelta(seconds=570),
        ),
        (
            Rule(kind="rrule", rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0", timezone="Europe/Berlin"),
            datetime(2026, 12, 8, 8, 0, tzinfo=UTC),
        ),
        (Rule(kind="rrule", rrule="DTSTART:20200101T000000\nRRULE:FREQ=DAILY;COUNT=2"), None),
    ],
)
def test_next_run_after(rule: Rule, expected: datetime | None) -> None:
    """The next firing strictly after a moment, in UTC; None when the rule has ended."""
    assert next_run_after(rule, NOW) == expected


def test_a_firing_moment_is_not_its_own_next() -> None:
    """At exactly a firing time, the next one is the following firing."""
    rule = Rule(kind="cron", cron="*/5 * * * *")
    at = datetime(2026, 12, 7, 23, 35, tzinfo=UTC)
    assert next_run_after(rule, at) == at + timedelta(minutes=5)


def test_prefect_form_of_each_kind() -> None:
    """Each kind becomes Prefect's schedule of that kind, in the rule's timezone; an interval
    is anchored at the rule's anchor (the row's created_at)."""
    cron = prefect_schedule(Rule(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"))
    assert type(cron).__name__ == "CronSchedule" and cron.timezone == "Europe/Berlin"
    interval = prefect_schedule(Rule(kind="interval", interval_seconds=90, anchor=NOW))
    assert getattr(interval, "interval", None) == timedelta(seconds=90)
    assert getattr(interval, "anchor_date", None) == NOW
    rrule = prefect_schedule(Rule(kind="rrule", rrule="FREQ=HOURLY"))
    assert getattr(rrule, "rrule", None) == "FREQ=HOURLY"
