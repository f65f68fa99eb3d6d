"""Reading Gemini's replies: finish reasons, the transcript schema, SDK errors as StepErrors."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, ValidationError

from engine.errors import ErrorKind, StepError
from engine.security.sanitize import snippet
from tasks.http_messages import transport_error

if TYPE_CHECKING:
    from google.genai import types

    from tasks.gemini import GeminiPromptConfig


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


def enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def check_finish(response: types.GenerateContentResponse, config: GeminiPromptConfig) -> None:
    """Raise the StepError a blocked, truncated or empty reply means."""
    if not response.candidates:
        feedback = response.prompt_feedback
        reason = enum_name(feedback.block_reason) if feedback else None
        if reason:
            detail = feedback.block_reason_message if feedback else None
            raise StepError(
                ErrorKind.CONTENT_BLOCKED,
                f"Gemini blocked the prompt ({reason})" + (f": {detail}" if detail else ""),
            )
        raise StepError(ErrorKind.INVALID_RESPONSE, "Gemini returned no candidates")
    candidate = response.candidates[0]
    reason = enum_name(candidate.finish_reason)
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
        flagged = [enum_name(r.category) for r in (candidate.safety_ratings or []) if r.blocked]
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
