"""execute-gemini-prompt: a prompt, optionally with audio, to a Gemini model (google-genai).

Audio comes from `input.audio`: either the output of an http_download step
(`{storage_path, content_type, ...}`) or a URL. Up to `inline_max_bytes` it is sent inline;
larger files go through the Files API (resumable upload, poll until ACTIVE, deleted after the
call). The prompt is `config.prompt_template` with `{name}` filled from `input.variables`,
each value sanitised (control characters stripped, length capped, braces neutralised).

SSRF: the SDK is handed an httpx client from `tasks.http_client.make_client`, so every request
it makes (generateContent, upload session, upload URL returned by the server, polling,
delete) passes the same address check as the other executors. SDK retries stay off: the
step's retry policy decides.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from engine.definitions.transformers import (
    MIB,
    BaseUrl,
    EnvVarName,
    TransformerConfig,
    TransformerType,
    template_fields,
)
from engine.errors import ErrorKind, StepError
from engine.security.sanitize import render_template
from tasks.context import StepContext
from tasks.gemini_audio import audio_file, upload, wait_active
from tasks.gemini_replies import Transcript, check_finish, classify_sdk_error, parse_output
from tasks.http_client import make_client

if TYPE_CHECKING:
    from google import genai
    from google.genai import types


class GeminiPromptConfig(TransformerConfig):
    """`gemini_prompt`: send a prompt (and optionally audio) to a Gemini model."""

    model: str = Field(default="gemini-2.5-flash", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    api_version: str = Field(default="v1beta", pattern=r"^v[0-9][A-Za-z0-9]{0,15}$")
    api_key_env_var: EnvVarName = "GEMINI_API_KEY"
    base_url: BaseUrl | None = Field(
        default=None, description="Override of the API endpoint (proxies, tests)."
    )
    prompt_template: str = Field(
        min_length=1,
        max_length=100_000,
        description="Prompt text; {name} inserts input.variables.name (sanitised); "
        "write literal braces as {{ and }}.",
    )
    response_format: Literal["transcript", "json", "text"] = "transcript"
    response_json_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema the reply must follow (response_format 'json')."
    )
    system_instruction: str | None = Field(default=None, max_length=100_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, gt=0, le=1_000_000)
    inline_max_bytes: int = Field(
        default=20 * MIB,
        ge=0,
        le=100 * MIB,
        description="Audio up to this size goes inline; larger goes through the Files API.",
    )
    max_audio_bytes: int = Field(
        default=2 * 1024 * MIB,
        gt=0,
        le=2 * 1024 * MIB,
        description="Largest audio accepted (the Files API limit is 2 GB).",
    )
    max_variable_chars: int = Field(
        default=10_000, gt=0, le=1_000_000, description="Each prompt variable is cut to this."
    )
    request_timeout_seconds: float = Field(default=300, gt=0, le=3600)
    file_poll_interval_seconds: float = Field(default=2, gt=0, le=60)
    file_poll_timeout_seconds: float = Field(default=300, gt=0, le=3600)
    timeout_seconds: float = Field(default=900, gt=0, le=86400)

    @field_validator("prompt_template", "system_instruction")
    @classmethod
    def _template_parses(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value

    @model_validator(mode="after")
    def _schema_only_for_json(self) -> GeminiPromptConfig:
        if self.response_json_schema is not None and self.response_format != "json":
            raise ValueError("response_json_schema applies only to response_format 'json'")
        return self


logger = logging.getLogger(__name__)


def build_prompt(config: GeminiPromptConfig, step_input: dict[str, Any]) -> str:
    """The prompt text: the template with sanitised `input.variables`."""
    variables = step_input.get("variables") or {}
    if not isinstance(variables, dict):
        raise StepError(ErrorKind.MAPPING, "input.variables must be an object")
    try:
        return render_template(
            config.prompt_template, variables, max_chars=config.max_variable_chars
        )
    except KeyError as exc:
        raise StepError(
            ErrorKind.MAPPING,
            f"the prompt template uses {{{exc.args[0]}}}, which input.variables lacks",
        ) from exc
    except ValueError as exc:
        raise StepError(ErrorKind.CONFIG, f"prompt_template: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Executor
# ---------------------------------------------------------------------------------------------


def _generation_config(config: GeminiPromptConfig) -> types.GenerateContentConfig:
    from google.genai import types

    options: dict[str, Any] = {
        "temperature": config.temperature,
        "max_output_tokens": config.max_output_tokens,
        "system_instruction": config.system_instruction,
    }
    if config.response_format == "transcript":
        options["response_mime_type"] = "application/json"
        options["response_schema"] = Transcript
    elif config.response_format == "json":
        options["response_mime_type"] = "application/json"
        if config.response_json_schema is not None:
            options["response_json_schema"] = config.response_json_schema
    return types.GenerateContentConfig(**{k: v for k, v in options.items() if v is not None})


def _audio_parts(
    client: genai.Client,
    audio: Any,
    config: GeminiPromptConfig,
    ctx: StepContext,
    uploads: list[types.File],
) -> list[types.Part]:
    """The audio part of the prompt (none without audio): inline, or uploaded to the Files API.

    An uploaded file is added to `uploads` before waiting for it, so the caller deletes it
    whatever happens next.
    """
    from google.genai import types

    if audio is None:
        return []
    with audio_file(audio, config, ctx) as (path, mime):
        size = path.stat().st_size
        if size > config.max_audio_bytes:
            raise StepError(
                ErrorKind.TOO_LARGE,
                f"audio is {size} bytes, more than max_audio_bytes={config.max_audio_bytes}",
            )
        if size <= config.inline_max_bytes:
            return [types.Part.from_bytes(data=path.read_bytes(), mime_type=mime)]
        uploaded = upload(client, path, mime, ctx)
        if uploaded.name:
            uploads.append(uploaded)
        active = wait_active(client, uploaded, mime, config)
        assert active.uri is not None
        return [types.Part.from_uri(file_uri=active.uri, mime_type=mime)]


def execute_gemini_prompt(
    config: GeminiPromptConfig, step_input: dict[str, Any], ctx: StepContext
) -> Any:
    """Run the prompt (with `input.audio` if given) and return the parsed reply.

    Output: transcript -> `{"segments": [...], "language": ...}`; json -> the parsed JSON;
    text -> `{"text": ...}`. Failures: blocked -> CONTENT_BLOCKED, MAX_TOKENS -> TRUNCATED,
    429 -> RATE_LIMITED, other 4xx -> CLIENT_ERROR, 5xx -> SERVER_ERROR, timeouts -> TIMEOUT,
    missing key variable -> CONFIG.
    """
    from google import genai
    from google.genai import types

    api_key = ctx.read_secret(config.api_key_env_var, purpose="the Gemini API")
    prompt = build_prompt(config, step_input)
    http_client = make_client(ctx.settings, timeout=config.request_timeout_seconds)
    client = genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=config.base_url,
            api_version=config.api_version,
            timeout=int(config.request_timeout_seconds * 1000),
            httpx_client=http_client,
        ),
    )
    uploads: list[types.File] = []
    try:
        parts = _audio_parts(client, step_input.get("audio"), config, ctx, uploads)
        parts.append(types.Part.from_text(text=prompt))
        response = client.models.generate_content(
            model=config.model,
            contents=[types.Content(role="user", parts=parts)],
            config=_generation_config(config),
        )
        check_finish(response, config)
        return parse_output(response, config)
    except StepError:
        raise
    except Exception as exc:
        raise classify_sdk_error(exc) from exc
    finally:
        for uploaded in uploads:
            try:
                client.files.delete(name=str(uploaded.name))
            except Exception as exc:  # the reply is what matters; the file expires anyway
                logger.warning("could not delete Gemini file %s: %s", uploaded.name, exc)
        http_client.close()


TRANSFORMER = TransformerType(
    "gemini_prompt", GeminiPromptConfig, "execute-gemini-prompt", execute_gemini_prompt
)
