"""execute-json-transform: reshape the step input with the mapping language."""

from __future__ import annotations

from typing import Any

from engine.definitions import mapping
from engine.definitions.transformers import JsonTransformConfig
from engine.errors import ErrorKind, MappingError, StepError
from tasks.context import StepContext


def execute_json_transform(
    config: JsonTransformConfig, step_input: dict[str, Any], ctx: StepContext
) -> Any:
    """Render `config.template` over `{input, job}`; a path that finds nothing is MAPPING."""
    context = {
        "input": step_input,
        "job": {
            "id": ctx.job_id,
            "workflow_id": ctx.workflow_id,
            "user_id": ctx.user_id,
            "step_id": ctx.step_id,
            "attempt": ctx.attempt,
        },
    }
    try:
        return mapping.render(
            config.template, context, where=f"transformer '{ctx.transformer_id}' template"
        )
    except MappingError as exc:
        raise StepError(ErrorKind.MAPPING, exc.message, details=exc.details) from exc
