"""execute-delay: wait, then pass the input through (for demos and tests)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from engine.definitions.transformers import TransformerConfig, TransformerType
from tasks.context import StepContext
from tasks.deadline import bounded_sleep


class DelayConfig(TransformerConfig):
    """`delay`: sleep, then pass the input through (demos and tests)."""

    seconds: float = Field(ge=0, le=3600)
    timeout_seconds: float = Field(default=3660, gt=0, le=86400)

    @model_validator(mode="after")
    def _timeout_covers_delay(self) -> DelayConfig:
        if self.timeout_seconds <= self.seconds:
            raise ValueError("timeout_seconds must be longer than seconds")
        return self


def execute_delay(config: DelayConfig, step_input: dict[str, Any], ctx: StepContext) -> Any:
    """Sleep `config.seconds` (no longer than the step's time left), then return the step
    input unchanged."""
    del ctx
    bounded_sleep(config.seconds)
    return step_input


TRANSFORMER = TransformerType("delay", DelayConfig, "execute-delay", execute_delay)
