"""What a rerun runs again (engine.jobs.control) and the status move it makes."""

from __future__ import annotations

import pytest

from engine.jobs.control import downstream, kept_outputs, rerun_key
from engine.jobs.transitions import JobStatus as S
from engine.jobs.transitions import can_move, rerun_sources, sources_of

#: a -> b -> d, a -> c (c parallel to b), e independent (depends_on: []).
DEPS = {"a": [], "b": ["a"], "c": ["a"], "d": ["b"], "e": []}


@pytest.mark.parametrize(
    ("step", "redo"),
    [
        ("a", ["a", "b", "c", "d"]),
        ("b", ["b", "d"]),
        ("c", ["c"]),
        ("d", ["d"]),
        ("e", ["e"]),
    ],
)
def test_downstream(step: str, redo: list[str]) -> None:
    """from_step redoes that step and every step waiting for it, in definition order."""
    assert downstream(DEPS, step) == redo


@pytest.mark.parametrize(
    ("step_data", "redo", "kept"),
    [
        ({"a": 1, "b": 2}, [], {"a": 1, "b": 2}),
        ({"a": 1, "b": 2}, ["b", "d"], {"a": 1}),
        ({"a": 1}, ["a", "b"], {}),
        (None, ["a"], {}),
    ],
)
def test_kept_outputs(
    step_data: dict[str, int] | None, redo: list[str], kept: dict[str, int]
) -> None:
    """A rerun keeps every stored output except the redone steps'."""
    assert kept_outputs(step_data, redo) == kept


def test_rerun_key_differs_from_the_first_run() -> None:
    """Each rerun has its own flow-run idempotency key, never the job id alone."""
    assert rerun_key("j1", 2) == "j1:rerun:2"
    assert rerun_key("j1", 1) != rerun_key("j1", 2) != "j1"


@pytest.mark.parametrize(
    ("source", "allowed"),
    [(S.FAILED, True), (S.COMPLETED, False)],
)
def test_rerun_move(source: S, allowed: bool) -> None:
    """failed -> pending is the one move out of a finished status."""
    assert can_move(source, S.PENDING) is allowed


def test_rerun_guard_is_separate_from_the_engines() -> None:
    """Only the rerun's own guard accepts a failed job; the engine's transitions to pending
    (a resubmission) still never reopen a finished job."""
    assert rerun_sources() == ["failed"]
    assert sources_of(S.PENDING) == ["awaiting_retry", "pending", "running"]
    assert "failed" not in sources_of(S.RUNNING)
