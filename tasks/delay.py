"""execute-delay: wait, then pass the input through (for demos and tests)."""

from __future__ import annotations

import time
from typing import Any

from engine.definitions.transformers import DelayConfig
from tasks.context import StepContext


def execute_delay(config: DelayConfig, step_input: dict[str, Any], ctx: StepContext) -> Any:
    """Sleep `config.seconds`, then return the step input unchanged."""
    del ctx
    time.sleep(config.seconds)
    return step_input
