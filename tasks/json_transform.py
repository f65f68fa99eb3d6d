"""execute-json-transform: reshape the step input with the mapping language."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from engine.definitions import mapping
from engine.definitions.mapping import iter_paths, path_info, template_problems
from engine.definitions.transformers import TransformerConfig, TransformerType
from engine.errors import ErrorKind, MappingError, StepError
from tasks.context import StepContext


class JsonTransformConfig(TransformerConfig):
    """`json_transform`: build the output from the input with the mapping language."""

    template: Any = Field(
        description="A mapping: keys ending in '.$' take a JSONPath over {input, job}; "
        "other values are literal."
    )
    timeout_seconds: float = Field(default=30, gt=0, le=86400)

    @field_validator("template")
    @classmethod
    def _template_compiles(cls, value: Any) -> Any:
        found = template_problems(value, "template")
        if found:
            raise ValueError("; ".join(f"{where}: {message}" for where, message in found))
        for where, expr in iter_paths(value, "template"):
            if path_info(expr).root_keys & {"steps"}:
                raise ValueError(
                    f"{where}: a json_transform sees only $.input and $.job; map step outputs "
                    "into the step input instead"
                )
        return value


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


TRANSFORMER = TransformerType(
    "json_transform", JsonTransformConfig, "execute-json-transform", execute_json_transform
)
