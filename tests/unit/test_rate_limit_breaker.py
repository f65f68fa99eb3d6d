"""The rate limiter's shared-or-local circuit breaker (api/ratelimit_breaker.py), as a table:
each case plays a sequence of events on a breaker with a 10 s cool-down and names the route
the last `choose` gives and the state left."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from api.ratelimit_breaker import FallbackBreaker, Route

COOL_DOWN = 10.0


@dataclass(frozen=True)
class Case:
    """Events ("choose@t", "fail@t", "ok:<route>", space-separated), then what the breaker
    says at `at`: the route `choose` gives, whether it falls back, and since when."""

    name: str
    events: str
    at: float
    route: Route
    falling_back: bool
    since: float | None


SHARED, PROBE, LOCAL = Route.SHARED, Route.PROBE, Route.LOCAL
CASES = [
    Case("starts shared", "", 0, SHARED, False, None),
    Case("stays shared on success", "choose@0 ok:shared", 1, SHARED, False, None),
    Case("a failure goes local", "choose@0 fail@0", 1, LOCAL, True, 0),
    Case("local until the cool-down ends", "fail@5", 14.9, LOCAL, True, 5),
    Case("probes once the cool-down ends", "fail@5", 15, PROBE, True, 5),
    Case("one probe at a time", "fail@0 choose@10", 11, LOCAL, True, 0),
    Case("a silent probe is given up", "fail@0 choose@10", 20, PROBE, True, 0),
    Case("probe success: shared", "fail@0 choose@10 ok:probe", 11, SHARED, False, None),
    Case("probe failure: new cool-down", "fail@0 choose@10 fail@10", 19, LOCAL, True, 0),
    Case("after a failed probe, probe again", "fail@0 choose@10 fail@10", 20, PROBE, True, 0),
    Case("late failures restart the cool-down", "fail@0 fail@3", 12, LOCAL, True, 0),
    Case("a stale shared success does not end it", "fail@0 ok:shared", 1, LOCAL, True, 0),
    Case("late probe: shared", "fail@0 choose@10 choose@20 ok:probe", 21, SHARED, False, None),
    Case("a new outage has a new start", "fail@0 choose@10 ok:probe fail@30", 31, LOCAL, True, 30),
]  # fmt: skip


def play(breaker: FallbackBreaker, events: str) -> list[bool]:
    """Apply each event of a case to `breaker`; what `failed` and `succeeded` returned."""
    switched = []
    for event in events.split():
        kind, _, arg = event.replace("@", ":").partition(":")
        if kind == "choose":
            breaker.choose(float(arg))
        elif kind == "fail":
            switched.append(breaker.failed(float(arg)))
        elif kind == "ok":
            switched.append(breaker.succeeded(Route(arg)))
        else:
            raise AssertionError(f"unknown event {event!r}")
    return switched


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_breaker_table(case: Case) -> None:
    """After the case's events, `choose` at `case.at` gives its route and the state is its own."""
    breaker = FallbackBreaker(COOL_DOWN)
    play(breaker, case.events)
    assert breaker.fallback_since == case.since
    assert breaker.choose(case.at) is case.route
    assert breaker.falling_back is case.falling_back


@pytest.mark.parametrize(
    ("events", "switched"),
    [
        ("fail@0", [True]),
        ("fail@0 fail@1 fail@2", [True, False, False]),
        ("fail@0 ok:probe", [True, True]),
        ("ok:probe", [False]),
        ("fail@0 ok:shared ok:probe ok:probe", [True, False, True, False]),
    ],
)
def test_only_switches_report_true(events: str, switched: list[bool]) -> None:
    """`failed` and `succeeded` say True only when they change the scope, so the limiter logs
    one line per switch however many requests see the outage."""
    assert play(FallbackBreaker(COOL_DOWN), events) == switched


def test_attempts_while_down_are_one_per_cool_down() -> None:
    """With the shared storage failing every time, 1000 requests over 35 s (one each 35 ms)
    ask it 4 times: the first request, then one probe after each cool-down."""
    breaker = FallbackBreaker(COOL_DOWN)
    for i in range(1000):
        now = i * 0.035
        if breaker.choose(now) is not Route.LOCAL:
            breaker.failed(now)
    assert breaker.shared_attempts == 4
    assert breaker.fallbacks == 1


@pytest.mark.parametrize("cool_down", [0, -1.0])
def test_cool_down_must_be_positive(cool_down: float) -> None:
    """A zero or negative cool-down is refused (it would ask the storage on every request)."""
    with pytest.raises(ValueError, match="cool_down_seconds"):
        FallbackBreaker(cool_down)
