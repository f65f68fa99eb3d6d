"""The `switch` step kind: cases tried in order, the first whose condition holds is taken,
else `default`.

A switch step runs no transformer. When it runs, it picks its branch and its output is
``{"case": <index of the case taken, or "default">, "steps": [the steps of that branch]}``.
The steps named in the branches it did not take are skipped (flows/skipping.py); each of them
depends directly on the switch step (engine.definitions.condition_checks).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from engine.definitions.conditions import MAX_LENGTH


class SwitchCase(BaseModel):
    """One case: its condition and the steps it runs."""

    model_config = ConfigDict(extra="forbid")

    when: str = Field(
        max_length=MAX_LENGTH,
        description="A condition (engine.definitions.conditions), e.g. "
        "\"$.steps.detect.language == 'fr'\".",
    )
    then: list[str] = Field(
        min_length=1,
        max_length=100,
        description="The steps this case runs (each depends on the switch step).",
    )


class SwitchSpec(BaseModel):
    """Cases tried in order; the first whose condition holds is taken, else `default`."""

    model_config = ConfigDict(extra="forbid")

    cases: list[SwitchCase] = Field(min_length=1, max_length=50)
    default: list[str] | None = Field(
        default=None,
        max_length=100,
        description="The steps run when no case holds ([]: none). Required by the checks.",
    )


def branch_steps(spec: SwitchSpec) -> list[list[str]]:
    """The steps of each branch: every case's, then the default's (empty when unset)."""
    return [list(case.then) for case in spec.cases] + [list(spec.default or [])]
