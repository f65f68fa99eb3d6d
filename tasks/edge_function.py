"""invoke-edge-function: run a step on a deployed Supabase Edge Function."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import Field

from engine.definitions.transformers import (
    FUNCTION_NAME_RE,
    MIB,
    EnvVarName,
    TransformerConfig,
    TransformerType,
)
from tasks.context import StepContext
from tasks.http_messages import (
    check_header_value,
    decode_body,
    guarded_call,
    http_status_error,
    read_capped,
)


class EdgeFunctionConfig(TransformerConfig):
    """`edge_function`: invoke a deployed Supabase Edge Function with the step input."""

    function_name: str = Field(pattern=FUNCTION_NAME_RE.pattern)
    api_key_env_var: EnvVarName = "SUPABASE_SERVICE_ROLE_KEY"
    max_response_bytes: int = Field(default=10 * MIB, gt=0, le=100 * MIB)
    request_timeout_seconds: float = Field(default=150, gt=0, le=3600)
    timeout_seconds: float = Field(default=300, gt=0, le=86400)


def edge_function_url(supabase_url: str, function_name: str) -> str:
    """`{SUPABASE_URL}/functions/v1/{function_name}`."""
    return f"{supabase_url.rstrip('/')}/functions/v1/{quote(function_name, safe='')}"


def execute_edge_function(
    config: EdgeFunctionConfig, step_input: dict[str, Any], ctx: StepContext
) -> Any:
    """POST the step input as JSON to the Edge Function with `Authorization: Bearer <key>`.

    The key comes from `api_key_env_var`. SUPABASE_URL is operator configuration, so its host
    is trusted even when it is private (local Supabase). Returns the JSON reply (or
    `{"text": ...}` when the reply is not JSON); failures are classified by status.
    """
    key = ctx.read_secret(config.api_key_env_var, purpose=f"Edge Function {config.function_name}")
    url = edge_function_url(ctx.settings.supabase_url, config.function_name)
    headers = {
        "Authorization": check_header_value("Authorization", f"Bearer {key}"),
        "Content-Type": "application/json",
        "X-Supaflow-Job-Id": ctx.job_id,
        "X-Supaflow-Step-Id": ctx.step_id,
    }
    body = json.dumps(step_input, separators=(",", ":")).encode("utf-8")
    trusted_host = urlsplit(ctx.settings.supabase_url).hostname or ""
    with guarded_call(
        ctx.settings,
        f"Edge Function {config.function_name}",
        timeout=config.request_timeout_seconds,
        follow_redirects=False,
        allow_hosts=[trusted_host],
    ) as client:
        with client.stream("POST", url, content=body, headers=headers) as response:
            content = read_capped(response, config.max_response_bytes)
        if not response.is_success:
            raise http_status_error(response, body=content)
        reply = decode_body(content, response.headers.get("content-type"))
        return reply if not isinstance(reply, str) else {"text": reply}


TRANSFORMER = TransformerType(
    "edge_function", EdgeFunctionConfig, "invoke-edge-function", execute_edge_function
)
