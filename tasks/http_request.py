"""execute-http-request: one HTTP call whose URL and body come from the step input."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from engine.definitions.transformers import (
    MIB,
    HttpUrlTemplate,
    LiteralHeaders,
    SecretHeader,
    TransformerConfig,
    TransformerType,
    check_header_name,
)
from engine.errors import ErrorKind, StepError
from tasks.context import StepContext
from tasks.http_messages import (
    build_url,
    check_header_value,
    decode_body,
    guarded_call,
    http_status_error,
    read_capped,
    redact_url,
)


class HttpRequestConfig(TransformerConfig):
    """`http_request`: one HTTP call built from the step input."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url_template: HttpUrlTemplate = Field(
        description="URL with {name} placeholders filled (URL-encoded) from the step input."
    )
    headers: LiteralHeaders = Field(default_factory=dict)
    secret_headers: dict[str, SecretHeader] = Field(default_factory=dict)
    expected_statuses: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, description="Statuses that count as success; unset: any 2xx."
    )
    max_response_bytes: int = Field(default=10 * MIB, gt=0, le=100 * MIB)
    follow_redirects: bool = True
    request_timeout_seconds: float = Field(default=30, gt=0, le=3600)
    timeout_seconds: float = Field(default=120, gt=0, le=86400)

    @field_validator("secret_headers")
    @classmethod
    def _secret_header_names(cls, value: dict[str, SecretHeader]) -> dict[str, SecretHeader]:
        for name in value:
            check_header_name(name)
        return value

    @model_validator(mode="after")
    def _no_duplicate_headers(self) -> HttpRequestConfig:
        both = {h.lower() for h in self.headers} & {h.lower() for h in self.secret_headers}
        if both:
            raise ValueError(f"header(s) set twice (headers and secret_headers): {sorted(both)}")
        return self


MAX_REDIRECTS = 5
#: Response headers not worth passing on to later steps.
_DROPPED_RESPONSE_HEADERS = frozenset(
    {"set-cookie", "connection", "keep-alive", "transfer-encoding"}
)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def send_following_redirects(
    client: httpx.Client, request: httpx.Request, *, follow: bool, secret_names: set[str]
) -> httpx.Response:
    """Send `request` (streamed), following redirects by hand so that secret headers are
    dropped when a redirect leaves the original origin (httpx only drops Authorization)."""
    origin = _origin(request.url)
    for _hop in range(MAX_REDIRECTS + 1):
        response = client.send(request, stream=True, follow_redirects=False)
        if not (follow and response.is_redirect and response.next_request is not None):
            return response
        next_request = response.next_request
        response.close()
        if _origin(next_request.url) != origin:
            for name in secret_names:
                next_request.headers.pop(name, None)
        request = next_request
    raise StepError(ErrorKind.CLIENT_ERROR, f"more than {MAX_REDIRECTS} redirects")


def execute_http_request(
    config: HttpRequestConfig, step_input: dict[str, Any], ctx: StepContext
) -> dict[str, Any]:
    """Call `config.url_template` filled from the step input; send `input.body` as JSON.

    Returns `{status, headers, body}` (body parsed when JSON). A status outside
    `expected_statuses` (default: any 2xx) raises a StepError classified by status.
    """
    url = build_url(config.url_template, step_input)
    headers = {name: check_header_value(name, value) for name, value in config.headers.items()}
    for name, secret in config.secret_headers.items():
        value = ctx.read_secret(secret.env_var, purpose=f"header {name}")
        headers[name] = check_header_value(name, secret.prefix + value)
    has_body = "body" in step_input and step_input["body"] is not None
    if has_body and config.method in ("GET", "HEAD"):
        raise StepError(ErrorKind.CLIENT_ERROR, f"a {config.method} request cannot carry a body")

    what = f"{config.method} {redact_url(url)}"
    with guarded_call(
        ctx.settings, what, timeout=config.request_timeout_seconds, follow_redirects=False
    ) as client:
        request = client.build_request(
            config.method, url, headers=headers, json=step_input["body"] if has_body else None
        )
        response = send_following_redirects(
            client,
            request,
            follow=config.follow_redirects,
            secret_names={n.lower() for n in config.secret_headers},
        )
        try:
            content = read_capped(response, config.max_response_bytes)
        finally:
            response.close()
        expected = config.expected_statuses
        ok = response.status_code in expected if expected else response.is_success
        if not ok:
            raise http_status_error(response, body=content)
        return {
            "status": response.status_code,
            "headers": {
                k.lower(): v
                for k, v in response.headers.items()
                if k.lower() not in _DROPPED_RESPONSE_HEADERS
            },
            "body": decode_body(content, response.headers.get("content-type")),
        }


TRANSFORMER = TransformerType(
    "http_request", HttpRequestConfig, "execute-http-request", execute_http_request
)
