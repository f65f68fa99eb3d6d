"""Every transformer type this engine runs, by `type` and by `target_function`.

A type lives in one module of `tasks/` (its config model and its executor) and is listed here
once. An executor is a plain synchronous function `(config, step_input, ctx) -> output`: the
parsed config model of its transformer, the step input after mapping, and the attempt's
`StepContext`. It returns a JSON-serialisable value and raises `StepError(kind, message)` for
every failure it can classify; the flow wraps executors in Prefect tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.definitions.transformers import TransformerCatalog
from engine.errors import ConfigurationError
from tasks import delay, edge_function, gemini, http_download, http_request, json_transform, webhook
from tasks.context import StepContext

Executor = Callable[[Any, dict[str, Any], StepContext], Any]

CATALOG = TransformerCatalog(
    [
        gemini.TRANSFORMER,
        http_download.TRANSFORMER,
        http_request.TRANSFORMER,
        webhook.TRANSFORMER,
        json_transform.TRANSFORMER,
        edge_function.TRANSFORMER,
        delay.TRANSFORMER,
    ]
)

EXECUTORS: dict[str, Executor] = {
    entry.target_function: entry.executor for entry in CATALOG.types.values()
}


def get_executor(target_function: str) -> Executor:
    """The executor registered under `target_function` (ConfigurationError if none)."""
    try:
        return EXECUTORS[target_function]
    except KeyError:
        known = ", ".join(sorted(EXECUTORS))
        raise ConfigurationError(f"no executor named {target_function!r}; known: {known}") from None
