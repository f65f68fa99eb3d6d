"""invoke-edge-function: run a step on a deployed Supabase Edge Function."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlsplit

from engine.definitions.transformers import EdgeFunctionConfig
from tasks.context import StepContext
from tasks.http_client import (
    check_header_value,
    classify_errors,
    decode_body,
    http_status_error,
    make_client,
    read_capped,
)


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
    with (
        make_client(
            ctx.settings,
            timeout=config.request_timeout_seconds,
            follow_redirects=False,
            allow_hosts=[trusted_host],
        ) as client,
        classify_errors(f"Edge Function {config.function_name}"),
    ):
        with client.stream("POST", url, content=body, headers=headers) as response:
            content = read_capped(response, config.max_response_bytes)
        if not response.is_success:
            raise http_status_error(response, body=content)
        reply = decode_body(content, response.headers.get("content-type"))
        return reply if not isinstance(reply, str) else {"text": reply}
