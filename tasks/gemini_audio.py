"""Audio for a Gemini prompt: a local copy of a download output or of a URL, sent inline or
through the Files API (upload, then wait until the file is ACTIVE)."""

from __future__ import annotations

import mimetypes
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from engine.errors import ErrorKind, StepError
from tasks.context import StepContext
from tasks.deadline import bounded_sleep
from tasks.gemini_replies import enum_name
from tasks.http_client import make_client
from tasks.http_messages import check_url, classify_errors, http_status_error
from tasks.storage import local_copy

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

    from tasks.gemini import GeminiPromptConfig


_CHUNK_BYTES = 256 * 1024


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


def upload(client: genai.Client, path: Path, mime: str, ctx: StepContext) -> types.File:
    from google.genai import types

    return client.files.upload(
        file=str(path),
        config=types.UploadFileConfig(mime_type=mime, display_name=f"{ctx.job_id}-{ctx.step_id}"),
    )


def wait_active(
    client: genai.Client, uploaded: types.File, mime: str, config: GeminiPromptConfig
) -> types.File:
    deadline = time.monotonic() + config.file_poll_timeout_seconds
    current = uploaded
    while enum_name(current.state) != "ACTIVE":
        state = enum_name(current.state)
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
        bounded_sleep(config.file_poll_interval_seconds)
        assert uploaded.name is not None
        current = client.files.get(name=uploaded.name)
    return current
