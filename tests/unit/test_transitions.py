"""The job status machine: which moves are allowed, and the SQL guard derived from it."""

from __future__ import annotations

import pytest

from engine.jobs.transitions import JobStatus as S
from engine.jobs.transitions import can_move, sources_of


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        (S.PENDING, S.RUNNING, True),
        (S.RUNNING, S.AWAITING_RETRY, True),
        (S.AWAITING_RETRY, S.RUNNING, True),
        (S.RUNNING, S.COMPLETED, True),
        (S.RUNNING, S.FAILED, True),
        (S.RUNNING, S.RUNNING, True),  # the next step starts
        (S.RUNNING, S.PENDING, True),  # resubmitted after a crash
        (S.AWAITING_RETRY, S.PENDING, True),
        (S.PENDING, S.PENDING, True),  # a dispatched run was lost before it started
        (S.PENDING, S.FAILED, True),  # configuration lookup failed
        (S.PENDING, S.COMPLETED, False),
        (S.PENDING, S.AWAITING_RETRY, False),
        (S.AWAITING_RETRY, S.COMPLETED, False),
        (S.COMPLETED, S.RUNNING, False),
        (S.COMPLETED, S.FAILED, False),
        (S.FAILED, S.RUNNING, False),
        (S.FAILED, S.PENDING, True),  # a rerun (its own guard: rerun_sources)
        (S.COMPLETED, S.PENDING, False),
    ],
)
def test_allowed_moves(source: S, target: S, allowed: bool) -> None:
    """Finished jobs never move again; retries and resubmissions follow Prefect's states."""
    assert can_move(source, target) is allowed


def test_sql_guard_lists_every_source() -> None:
    """The statuses a transition SQL accepts are exactly those allowed to move there."""
    assert sources_of(S.COMPLETED) == ["running"]
    assert sources_of(S.AWAITING_RETRY) == ["running"]
    assert sources_of(S.RUNNING) == ["awaiting_retry", "pending", "running"]
    assert "completed" not in sources_of(S.FAILED)
