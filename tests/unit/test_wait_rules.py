"""The pure rules of wait steps (engine/jobs/waits.py), table by table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.definitions.wait_steps import ApprovalWait, DeciderRule, EventWait, SleepWait
from engine.errors import MappingError
from engine.jobs import waits
from engine.jobs.wait_fields import row_fields, spec_of

SINCE = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CONTEXT = {
    "input": {"at": "2026-12-07T12:30:00Z", "past": "2026-12-01T00:00:00+00:00", "n": 3},
    "steps": {"pick": {"when": "2026-12-07T13:00:00+01:00"}},
    "job": {},
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (SleepWait(seconds=5), SINCE + timedelta(seconds=5)),
        (SleepWait.model_validate({"until.$": "$.input.at"}), SINCE + timedelta(minutes=30)),
        (SleepWait.model_validate({"until.$": "$.steps.pick.when"}), SINCE),  # 12:00 UTC
        (SleepWait.model_validate({"until.$": "$.input.past"}), SINCE),  # past: wake at once
        (ApprovalWait(), None),
        (ApprovalWait(timeout_seconds=3600), SINCE + timedelta(hours=1)),
        (EventWait(name="paid", timeout_seconds=60), SINCE + timedelta(minutes=1)),
        (EventWait(name="paid"), None),
    ],
)
def test_deadline(spec: Any, expected: datetime | None) -> None:
    """A sleep ends at since + seconds or at the time its path reads (never before since);
    an approval or event at its timeout, or never."""
    assert waits.deadline(spec, SINCE, CONTEXT, step_id="s") == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("$.input.n", "expected an ISO 8601 time, got int"),
        ("$.input.missing", "matched nothing"),
        ("$.job", "expected an ISO 8601 time, got dict"),
    ],
)
def test_a_sleep_until_something_else_is_a_mapping_error(path: str, message: str) -> None:
    """`until.$` must find one ISO 8601 time with an offset."""
    with pytest.raises(MappingError, match=message):
        waits.deadline(SleepWait.model_validate({"until.$": path}), SINCE, CONTEXT, step_id="s")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2026-12-07T12:00:00Z", True),
        ("2026-12-07T12:00:00+02:00", True),
        ("2026-12-07T12:00:00", False),  # no offset
        ("tomorrow", False),
        (17, False),
    ],
)
def test_parse_time(value: Any, ok: bool) -> None:
    """Only aware ISO 8601 times."""
    if ok:
        assert waits.parse_time(value, where="w").tzinfo is not None
    else:
        with pytest.raises(MappingError):
            waits.parse_time(value, where="w")


RULE = DeciderRule.model_validate({"claim": "app_metadata.role", "in": ["reviewer", 7, True]})


@pytest.mark.parametrize(
    ("claims", "allowed"),
    [
        ({"app_metadata": {"role": "reviewer"}}, True),
        ({"app_metadata": {"role": ["viewer", "reviewer"]}}, True),
        ({"app_metadata": {"role": 7}}, True),
        ({"app_metadata": {"role": True}}, True),
        ({"app_metadata": {"role": 1}}, False),  # 1 is not True
        ({"app_metadata": {"role": "Reviewer"}}, False),
        ({"app_metadata": {"role": ["viewer"]}}, False),
        ({"app_metadata": {"role": {"reviewer": True}}}, False),
        ({"app_metadata": {}}, False),
        ({"app_metadata": "reviewer"}, False),
        ({}, False),
    ],
)
def test_rule_allows(claims: dict[str, Any], allowed: bool) -> None:
    """The claim at the dotted path is one of the values (a list: any item), type and all."""
    assert waits.rule_allows(RULE, claims) is allowed


OWNER, OTHER = "owner-id", "other-id"
REVIEWER = {"app_metadata": {"role": "reviewer"}}


@pytest.mark.parametrize(
    ("spec", "claims", "allowed", "reason"),
    [
        (ApprovalWait(), {"sub": OWNER}, True, ""),
        (ApprovalWait(), {"sub": OTHER, **REVIEWER}, False, "only the job's owner"),
        (ApprovalWait(deciders=RULE), {"sub": OTHER, **REVIEWER}, True, ""),
        (ApprovalWait(deciders=RULE), {"sub": OWNER, **REVIEWER}, True, ""),
        (ApprovalWait(deciders=RULE), {"sub": OWNER}, False, "not one of the allowed"),
        (ApprovalWait(deciders=RULE), {"sub": OTHER}, False, "not one of the allowed"),
        (
            ApprovalWait(deciders=RULE, forbid_self_approval=True),
            {"sub": OWNER, **REVIEWER},
            False,
            "self-approval is forbidden",
        ),
        (
            ApprovalWait(deciders=RULE, forbid_self_approval=True),
            {"sub": OTHER, **REVIEWER},
            True,
            "",
        ),
        (ApprovalWait(), {}, False, "only the job's owner"),
    ],
)
def test_may_decide(spec: ApprovalWait, claims: dict[str, Any], allowed: bool, reason: str) -> None:
    """The owner by default; the rule's users with deciders (the owner too unless forbidden)."""
    verdict = waits.may_decide(spec, claims, OWNER)
    assert verdict.allowed is allowed
    assert reason in verdict.reason


@pytest.mark.parametrize(
    ("match", "payload", "matches"),
    [
        (None, {"anything": 1}, True),
        ({}, {}, True),
        ({"$.status": "paid"}, {"status": "paid", "amount": 3}, True),
        ({"$.status": "paid"}, {"status": "pending"}, False),
        ({"$.status": "paid"}, {}, False),
        ({"$.amount": 3}, {"amount": 3.0}, False),  # types must agree
        ({"$.ok": True}, {"ok": 1}, False),
        ({"$.order.id": "a1", "$.status": "paid"}, {"order": {"id": "a1"}, "status": "paid"}, True),
        (
            {"$.order.id": "a1", "$.status": "paid"},
            {"order": {"id": "b2"}, "status": "paid"},
            False,
        ),
        ({"$.items[0]": "x"}, {"items": ["x", "y"]}, True),
        ({"$.meta": {"a": 1}}, {"meta": {"a": 1}}, True),
    ],
)
def test_payload_matches(
    match: dict[str, Any] | None, payload: dict[str, Any], matches: bool
) -> None:
    """Every path finds a value equal to (and of the type of) the expected one."""
    assert waits.payload_matches(match, payload) is matches


@pytest.mark.parametrize(
    ("spec", "outcome"),
    [
        (ApprovalWait(timeout_seconds=1), "fail"),
        (ApprovalWait(timeout_seconds=1, on_timeout="reject"), "reject"),
        (ApprovalWait(timeout_seconds=1, on_timeout="approve"), "approve"),
        (EventWait(name="x", timeout_seconds=1), "fail"),
    ],
)
def test_timeout_outcome(spec: Any, outcome: str) -> None:
    """An approval's on_timeout (default fail); an event's timeout always fails."""
    assert waits.timeout_outcome(spec) == outcome


def test_a_sleep_has_no_timeout_outcome() -> None:
    """A sleep's deadline is its wake time, never a failure."""
    with pytest.raises(ValueError, match="no timeout"):
        waits.timeout_outcome(SleepWait(seconds=1))


def test_outputs_and_waiting_for() -> None:
    """The approval and sleep outputs and the jobs.waiting_for value."""
    assert waits.approval_output(
        "reject", comment=None, form=None, decided_by=None, decided_at=SINCE
    ) == {
        "decision": "rejected",
        "comment": None,
        "form": None,
        "decided_by": None,
        "decided_at": "2026-12-07T12:00:00+00:00",
    }
    assert waits.sleep_output(SINCE) == {"slept_until": "2026-12-07T12:00:00+00:00"}
    assert waits.waiting_for("sleep", "nap", SINCE, None) == {
        "kind": "sleep",
        "step": "nap",
        "since": "2026-12-07T12:00:00+00:00",
        "deadline": None,
    }


@pytest.mark.parametrize(
    "spec",
    [
        ApprovalWait(deciders=RULE, forbid_self_approval=True, timeout_seconds=5),
        SleepWait.model_validate({"until.$": "$.input.at"}),
        EventWait(name="paid", match={"$.status": "paid"}),
    ],
)
def test_a_stored_spec_reads_back_the_same(spec: Any) -> None:
    """What job_waits stores of a spec parses back to it."""
    fields = row_fields(spec, None)
    assert spec_of(fields["kind"], fields["spec"]) == spec
