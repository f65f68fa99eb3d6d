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

import json
import logging
import mimetypes
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.definitions.transformers import (
    MIB,
    BaseUrl,
    EnvVarName,
    TransformerConfig,
    TransformerType,
    template_fields,
)
from engine.errors import ErrorKind, StepError
from engine.security.sanitize import render_template, snippet
from tasks.context import StepContext
from tasks.http_client import (
    check_url,
    classify_errors,
    http_status_error,
    make_client,
    transport_error,
)
from tasks.storage import local_copy


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


if TYPE_CHECKING:
    from google import genai
    from google.genai import types

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 256 * 1024

#: Finish reasons meaning the model refused or a filter stopped the reply.
BLOCKED_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "LANGUAGE",
    }
)
_OK_FINISH_REASONS = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED"})


class TranscriptSegment(BaseModel):
    """One stretch of speech."""

    start_seconds: float
    end_seconds: float
    speaker: str
    text: str


class Transcript(BaseModel):
    """The structured reply asked for with response_format 'transcript'."""

    segments: list[TranscriptSegment]
    language: str | None = None


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


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


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def check_finish(response: types.GenerateContentResponse, config: GeminiPromptConfig) -> None:
    """Raise the StepError a blocked, truncated or empty reply means."""
    if not response.candidates:
        feedback = response.prompt_feedback
        reason = _enum_name(feedback.block_reason) if feedback else None
        if reason:
            detail = feedback.block_reason_message if feedback else None
            raise StepError(
                ErrorKind.CONTENT_BLOCKED,
                f"Gemini blocked the prompt ({reason})" + (f": {detail}" if detail else ""),
            )
        raise StepError(ErrorKind.INVALID_RESPONSE, "Gemini returned no candidates")
    candidate = response.candidates[0]
    reason = _enum_name(candidate.finish_reason)
    if reason is None or reason in _OK_FINISH_REASONS:
        return
    if reason == "MAX_TOKENS":
        limit = config.max_output_tokens
        raise StepError(
            ErrorKind.TRUNCATED,
            "Gemini stopped at the output token limit (MAX_TOKENS"
            + (f", max_output_tokens={limit}" if limit else "")
            + "); the reply is incomplete: raise max_output_tokens or send shorter audio",
        )
    if reason in BLOCKED_FINISH_REASONS:
        flagged = [_enum_name(r.category) for r in (candidate.safety_ratings or []) if r.blocked]
        extra = f" (categories: {', '.join(str(f) for f in flagged)})" if flagged else ""
        raise StepError(
            ErrorKind.CONTENT_BLOCKED, f"Gemini withheld the reply: finish reason {reason}{extra}"
        )
    raise StepError(ErrorKind.INVALID_RESPONSE, f"Gemini ended the reply with {reason}")


def parse_output(response: types.GenerateContentResponse, config: GeminiPromptConfig) -> Any:
    """The step output for the configured response format."""
    text = response.text or ""
    if config.response_format == "text":
        return {"text": text}
    if config.response_format == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise StepError(
                ErrorKind.INVALID_RESPONSE, f"Gemini's reply is not JSON: {snippet(text)}"
            ) from exc
    parsed = response.parsed
    if not isinstance(parsed, Transcript):
        try:
            parsed = Transcript.model_validate_json(text)
        except ValidationError as exc:
            raise StepError(
                ErrorKind.INVALID_RESPONSE,
                f"Gemini's reply does not match the transcript schema: {snippet(text)}",
            ) from exc
    return parsed.model_dump(mode="json")


def classify_sdk_error(exc: Exception) -> StepError:
    """A StepError for an exception raised by the google-genai SDK or its HTTP client."""
    from google.genai import errors as genai_errors

    if isinstance(exc, StepError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code or 0)
        message = f"Gemini API answered {code} {exc.status or ''}: {snippet(str(exc.message))}"
        if isinstance(exc, genai_errors.ClientError):
            kind = ErrorKind.RATE_LIMITED if code in (408, 429) else ErrorKind.CLIENT_ERROR
        elif isinstance(exc, genai_errors.ServerError):
            kind = ErrorKind.SERVER_ERROR
        else:
            kind = ErrorKind.INVALID_RESPONSE
        return StepError(kind, message, details={"status": code})
    if isinstance(exc, httpx.HTTPError):
        return transport_error(exc, "Gemini API")
    return StepError(ErrorKind.INTERNAL, f"Gemini call failed: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------


def _guess_mime(content_type: str | None, name: str) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media and media != "application/octet-stream":
        return media
    guessed, _ = mimetypes.guess_type(name)
    return guessed or media or "application/octet-stream"


@contextmanager
def _fetch_url(
    url: str, config: GeminiPromptConfig, ctx: StepContext
) -> Iterator[tuple[Path, str]]:
    fd, name = tempfile.mkstemp(prefix=".audio-")
    temp = Path(name)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            make_client(ctx.settings, timeout=config.request_timeout_seconds) as client,
            classify_errors("audio download"),
            client.stream("GET", url) as response,
        ):
            if not response.is_success:
                response.read()
                raise http_status_error(response)
            size = 0
            for chunk in response.iter_bytes(_CHUNK_BYTES):
                size += len(chunk)
                if size > config.max_audio_bytes:
                    raise StepError(
                        ErrorKind.TOO_LARGE,
                        f"audio exceeds max_audio_bytes={config.max_audio_bytes}",
                    )
                out.write(chunk)
            mime = _guess_mime(response.headers.get("content-type"), httpx.URL(url).path)
        yield temp, mime
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def audio_file(
    audio: Any, config: GeminiPromptConfig, ctx: StepContext
) -> Iterator[tuple[Path, str]]:
    """A local file with the audio and its media type (downloaded/fetched as needed)."""
    if isinstance(audio, dict) and isinstance(audio.get("storage_path"), str):
        with local_copy(ctx.settings, audio["storage_path"]) as path:
            yield path, _guess_mime(audio.get("content_type"), path.name)
    elif isinstance(audio, str):
        with _fetch_url(check_url(audio), config, ctx) as (path, mime):
            yield path, mime
    else:
        raise StepError(
            ErrorKind.MAPPING,
            "input.audio must be a download output ({storage_path, content_type}) or a URL",
        )


def _upload(client: genai.Client, path: Path, mime: str, ctx: StepContext) -> types.File:
    from google.genai import types

    return client.files.upload(
        file=str(path),
        config=types.UploadFileConfig(mime_type=mime, display_name=f"{ctx.job_id}-{ctx.step_id}"),
    )


def _wait_active(
    client: genai.Client, uploaded: types.File, mime: str, config: GeminiPromptConfig
) -> types.File:
    deadline = time.monotonic() + config.file_poll_timeout_seconds
    current = uploaded
    while _enum_name(current.state) != "ACTIVE":
        state = _enum_name(current.state)
        if state == "FAILED":
            reason = current.error.message if current.error else None
            raise StepError(
                ErrorKind.UNSUPPORTED_CONTENT,
                f"Gemini could not process the uploaded audio ({mime})"
                + (f": {reason}" if reason else ""),
            )
        if time.monotonic() >= deadline:
            raise StepError(
                ErrorKind.TIMEOUT,
                f"uploaded file not ACTIVE after {config.file_poll_timeout_seconds} s "
                f"(state {state})",
            )
        time.sleep(config.file_poll_interval_seconds)
        assert uploaded.name is not None
        current = client.files.get(name=uploaded.name)
    return current


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
    uploaded: types.File | None = None
    try:
        parts: list[types.Part] = []
        audio = step_input.get("audio")
        if audio is not None:
            with audio_file(audio, config, ctx) as (path, mime):
                size = path.stat().st_size
                if size > config.max_audio_bytes:
                    raise StepError(
                        ErrorKind.TOO_LARGE,
                        f"audio is {size} bytes, more than "
                        f"max_audio_bytes={config.max_audio_bytes}",
                    )
                if size <= config.inline_max_bytes:
                    parts.append(types.Part.from_bytes(data=path.read_bytes(), mime_type=mime))
                else:
                    # Assigned before waiting, so the file is deleted whatever happens next.
                    uploaded = _upload(client, path, mime, ctx)
                    active = _wait_active(client, uploaded, mime, config)
                    assert active.uri is not None
                    parts.append(types.Part.from_uri(file_uri=active.uri, mime_type=mime))
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
        if uploaded is not None and uploaded.name:
            try:
                client.files.delete(name=uploaded.name)
            except Exception as exc:  # the reply is what matters; the file expires anyway
                logger.warning("could not delete Gemini file %s: %s", uploaded.name, exc)
        http_client.close()


TRANSFORMER = TransformerType(
    name="gemini_prompt",
    config_model=GeminiPromptConfig,
    target_function="execute-gemini-prompt",
    executor=execute_gemini_prompt,
)
