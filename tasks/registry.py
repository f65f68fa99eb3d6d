"""Executors by target_function name.

An executor is a plain synchronous function `(config, step_input, ctx) -> output`: the parsed
config model of its transformer, the step input after mapping, and the attempt's
`StepContext`. It returns a JSON-serialisable value and raises `StepError(kind, message)` for
every failure it can classify; the flow wraps executors in Prefect tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.errors import ConfigurationError
from tasks.context import StepContext
from tasks.delay import execute_delay
from tasks.edge_function import execute_edge_function
from tasks.gemini import execute_gemini_prompt
from tasks.http_download import execute_http_download
from tasks.http_request import execute_http_request
from tasks.json_transform import execute_json_transform
from tasks.webhook import execute_webhook_call

Executor = Callable[[Any, dict[str, Any], StepContext], Any]

EXECUTORS: dict[str, Executor] = {
    "execute-gemini-prompt": execute_gemini_prompt,
    "execute-http-download": execute_http_download,
    "execute-http-request": execute_http_request,
    "execute-webhook-call": execute_webhook_call,
    "execute-json-transform": execute_json_transform,
    "invoke-edge-function": execute_edge_function,
    "execute-delay": execute_delay,
}


def get_executor(target_function: str) -> Executor:
    """The executor registered under `target_function` (ConfigurationError if none)."""
    try:
        return EXECUTORS[target_function]
    except KeyError:
        known = ", ".join(sorted(EXECUTORS))
        raise ConfigurationError(f"no executor named {target_function!r}; known: {known}") from None
