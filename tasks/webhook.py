"""execute-webhook-call: POST a signed JSON payload to a URL."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import Field

from engine.definitions.transformers import (
    MIB,
    EnvVarName,
    HttpUrlTemplate,
    LiteralHeaders,
    TransformerConfig,
    TransformerType,
)
from engine.security import signing
from tasks.context import StepContext
from tasks.http_messages import (
    build_url,
    check_header_value,
    check_url,
    decode_body,
    guarded_call,
    http_status_error,
    read_capped,
    redact_url,
)


class WebhookCallConfig(TransformerConfig):
    """`webhook_call`: POST a signed JSON payload to a URL."""

    url_template: HttpUrlTemplate | None = Field(
        default=None, description="URL with {name} placeholders; unset: the step input's 'url'."
    )
    secret_env_var: EnvVarName | None = Field(
        default=None,
        description="Environment variable holding the HMAC signing secret; unset: unsigned.",
    )
    headers: LiteralHeaders = Field(default_factory=dict)
    max_response_bytes: int = Field(default=1 * MIB, gt=0, le=100 * MIB)
    request_timeout_seconds: float = Field(default=15, gt=0, le=600)
    timeout_seconds: float = Field(default=60, gt=0, le=86400)


DELIVERY_HEADER = "X-Supaflow-Delivery"


def webhook_payload(step_input: dict[str, Any]) -> Any:
    """What is posted: `input.payload` when present, else the whole input without `url`."""
    if "payload" in step_input:
        return step_input["payload"]
    return {k: v for k, v in step_input.items() if k != "url"}


def encode_payload(payload: Any) -> bytes:
    """The exact JSON bytes that are sent and signed (compact, UTF-8)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def execute_webhook_call(
    config: WebhookCallConfig, step_input: dict[str, Any], ctx: StepContext
) -> dict[str, Any]:
    """POST the payload as JSON, signed (engine.security.signing) when `secret_env_var` is set.

    The URL is `config.url_template` filled from the input, else `input.url`. Redirects are
    not followed (a signed delivery goes where it was addressed). 2xx succeeds; 408/429 are
    RATE_LIMITED, other 4xx CLIENT_ERROR, 5xx SERVER_ERROR, timeouts TIMEOUT, unreachable
    CONNECTION. `X-Supaflow-Delivery` (job and step id) is the same on every retry, so a
    receiver can drop duplicates. Returns `{status, body}`.
    """
    if config.url_template:
        url = build_url(config.url_template, step_input)
    else:
        url = check_url(step_input.get("url"))
    body = encode_payload(webhook_payload(step_input))
    headers = {name: check_header_value(name, value) for name, value in config.headers.items()}
    headers["Content-Type"] = "application/json"
    headers[DELIVERY_HEADER] = f"{ctx.job_id}:{ctx.step_id}"
    if config.secret_env_var:
        secret = ctx.read_secret(config.secret_env_var, purpose="webhook signatures")
        headers.update(signing.sign(secret.encode("utf-8"), int(time.time()), body))

    what = f"webhook {redact_url(url)}"
    with guarded_call(
        ctx.settings, what, timeout=config.request_timeout_seconds, follow_redirects=False
    ) as client:
        with client.stream("POST", url, content=body, headers=headers) as response:
            content = read_capped(response, config.max_response_bytes)
        if not response.is_success:
            raise http_status_error(response, body=content)
        return {
            "status": response.status_code,
            "body": decode_body(content, response.headers.get("content-type")),
        }


TRANSFORMER = TransformerType(
    "webhook_call", WebhookCallConfig, "execute-webhook-call", execute_webhook_call
)
