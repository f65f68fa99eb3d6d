"""Unit tests of how a fan-out step's list is resolved (flows.fan_out.resolve_items) and how
its output is shaped (flows.fan_out._Outcome)."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.states import Completed, Failed

from engine.errors import ErrorKind, StepError
from engine.settings import get_settings
from flows.fan_out import FanOut, _Outcome, resolve_items

CONTEXT: dict[str, Any] = {
    "input": {"files": [{"url": "a"}, {"url": "b"}], "one": {"url": "c"}, "none": None},
    "steps": {"list": {"names": ["x", "y", "z"]}},
    "job": {"id": "j"},
}


def fan(path: str) -> FanOut:
    """A fan-out over `path` (concurrency and error mode do not matter here)."""
    return FanOut(path, 10, "fail")


@pytest.mark.parametrize(
    ("path", "items"),
    [
        pytest.param("$.input.files", [{"url": "a"}, {"url": "b"}], id="singular-list"),
        pytest.param("$.input.files[*].url", ["a", "b"], id="wildcard-matches"),
        pytest.param("$.steps.list.names", ["x", "y", "z"], id="upstream-step"),
        pytest.param("$.input.nothing[*]", [], id="no-match-is-empty"),
    ],
)
def test_items_of_a_path(path: str, items: list[Any]) -> None:
    """A singular path gives the list it holds; any other path the list of its matches."""
    assert resolve_items(fan(path), CONTEXT, "work") == items


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        pytest.param("$.input.missing", "matched nothing", id="missing"),
        pytest.param("$.input.one", "gave an object, not a list", id="object"),
        pytest.param("$.input.none", "gave null, not a list", id="null"),
        pytest.param("$.job.id", "gave a string, not a list", id="string"),
    ],
)
def test_a_path_without_a_list_is_a_mapping_error(path: str, fragment: str) -> None:
    """A singular path that finds nothing or holds no list fails the step (kind mapping)."""
    with pytest.raises(StepError) as raised:
        resolve_items(fan(path), CONTEXT, "work")
    assert raised.value.kind is ErrorKind.MAPPING
    assert fragment in raised.value.message


def test_the_maximum_is_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """MAX_FAN_OUT_ITEMS items pass; one more is a mapping error naming the setting."""
    monkeypatch.setenv("MAX_FAN_OUT_ITEMS", "3")
    get_settings.cache_clear()
    try:
        assert resolve_items(fan("$.steps.list.names"), CONTEXT, "work") == ["x", "y", "z"]
        context = {**CONTEXT, "input": {"files": [1, 2, 3, 4]}}
        with pytest.raises(StepError) as raised:
            resolve_items(fan("$.input.files"), context, "work")
        assert raised.value.kind is ErrorKind.MAPPING
        assert "4 items, more than the maximum of 3 (MAX_FAN_OUT_ITEMS)" in raised.value.message
    finally:
        monkeypatch.delenv("MAX_FAN_OUT_ITEMS")
        get_settings.cache_clear()


def test_output_shapes() -> None:
    """ "fail" mode gives the bare list of results; "collect" gives results (null for failed
    items) and errors ordered by index, whatever order the items finished in."""
    outcome = _Outcome(results=[None] * 4)
    assert not outcome.record(0, Completed(), {"r": 0}, 1)
    assert outcome.record(3, Failed(data=StepError(ErrorKind.CLIENT_ERROR, "bad 3")), None, 1)
    assert outcome.record(1, Failed(data=StepError(ErrorKind.TIMEOUT, "slow 1")), None, 2)
    assert not outcome.record(2, Completed(), {"r": 2}, 1)
    assert outcome.failed_attempts == 1  # the first failure's (item 3's) attempts
    assert outcome.output("fail") == [{"r": 0}, None, {"r": 2}, None]
    assert outcome.output("collect") == {
        "results": [{"r": 0}, None, {"r": 2}, None],
        "errors": [
            {"index": 1, "kind": "timeout", "message": "slow 1"},
            {"index": 3, "kind": "client_error", "message": "bad 3"},
        ],
    }
