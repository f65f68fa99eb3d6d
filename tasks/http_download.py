"""execute-http-download: stream a URL into storage, within size and type limits."""

from __future__ import annotations

import fnmatch
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from engine.definitions.transformers import (
    BUCKET_RE,
    MEDIA_PATTERN_RE,
    MIB,
    TransformerConfig,
    TransformerType,
    template_fields,
)
from engine.errors import ErrorKind, StepError
from tasks.context import StepContext
from tasks.http_client import make_client
from tasks.http_messages import check_url, classify_errors, http_status_error
from tasks.storage import Backend, open_writer, safe_filename


class HttpDownloadConfig(TransformerConfig):
    """`http_download`: stream the file at input.url into storage."""

    storage: Literal["local", "supabase"] | None = Field(
        default=None, description="Storage backend; unset: STORAGE_BACKEND from settings."
    )
    bucket: str = Field(default="supaflow", pattern=BUCKET_RE.pattern)
    path_template: str = Field(
        default="jobs/{job_id}/{step_id}/{filename}",
        max_length=500,
        description="Object path; placeholders: job_id, workflow_id, step_id, "
        "transformer_id, attempt, filename (from the URL, sanitised).",
    )
    max_bytes: int = Field(default=500 * MIB, gt=0, le=5 * 1024 * MIB)
    allowed_content_types: list[str] | None = Field(
        default=None,
        description="Media types accepted, wildcards like 'audio/*'; unset: any.",
    )
    request_timeout_seconds: float = Field(default=60, gt=0, le=3600)
    timeout_seconds: float = Field(default=900, gt=0, le=86400)

    @field_validator("path_template")
    @classmethod
    def _path_template(cls, value: str) -> str:
        allowed = {"job_id", "workflow_id", "step_id", "transformer_id", "attempt", "filename"}
        unknown = [name for name in template_fields(value) if name not in allowed]
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join(sorted(set(unknown)))}; allowed: "
                + ", ".join(sorted(allowed))
            )
        parts = value.split("/")
        if value.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in value:
            raise ValueError("must be a relative path without empty, '.' or '..' segments")
        return value

    @field_validator("allowed_content_types")
    @classmethod
    def _media_patterns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [v.strip().lower() for v in value]
        bad = [v for v in cleaned if not MEDIA_PATTERN_RE.match(v)]
        if bad:
            raise ValueError(
                f"not a media type pattern: {', '.join(bad)} (use 'type/subtype', 'type/*')"
            )
        return cleaned


_CHUNK_BYTES = 64 * 1024


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type header (octet-stream if absent)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media or "application/octet-stream"


def content_type_allowed(media: str, patterns: list[str] | None) -> bool:
    """Whether `media` matches one of `patterns` ('audio/*', '*/*', exact); None allows all."""
    if patterns is None:
        return True
    return any(fnmatch.fnmatchcase(media, pattern) for pattern in patterns)


def filename_from_url(url: str) -> str:
    """A safe file name from the URL's last path segment."""
    last = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    return safe_filename(last)


def object_path(config: HttpDownloadConfig, ctx: StepContext, url: str) -> str:
    """The object path from `config.path_template` for this attempt."""
    values = {
        "job_id": ctx.job_id,
        "workflow_id": ctx.workflow_id,
        "step_id": ctx.step_id,
        "transformer_id": ctx.transformer_id,
        "attempt": str(ctx.attempt),
        "filename": filename_from_url(url),
    }
    return config.path_template.format(**{k: safe_filename(v, "x") for k, v in values.items()})


def execute_http_download(
    config: HttpDownloadConfig, step_input: dict[str, Any], ctx: StepContext
) -> dict[str, Any]:
    """Download `input.url` into storage.

    Refuses a declared Content-Length above `max_bytes` before reading and stops reading as
    soon as the stream exceeds it (TOO_LARGE); refuses media types outside
    `allowed_content_types` (UNSUPPORTED_CONTENT). Returns
    `{storage_path, content_type, size, sha256}`.
    """
    url = check_url(step_input.get("url"))
    backend: Backend = config.storage or (
        "supabase" if ctx.settings.storage_backend == "supabase" else "local"
    )
    path = object_path(config, ctx, url)
    what = f"download of {urlsplit(url).hostname}"
    with (
        make_client(ctx.settings, timeout=config.request_timeout_seconds) as client,
        classify_errors(what),
        client.stream("GET", url) as response,
    ):
        if not response.is_success:
            response.read()
            raise http_status_error(response)
        media = media_type(response.headers.get("content-type"))
        if not content_type_allowed(media, config.allowed_content_types):
            raise StepError(
                ErrorKind.UNSUPPORTED_CONTENT,
                f"content type {media!r} is not allowed (allowed: "
                f"{', '.join(config.allowed_content_types or [])})",
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > config.max_bytes:
            raise StepError(
                ErrorKind.TOO_LARGE,
                f"file declares {int(declared)} bytes, more than max_bytes={config.max_bytes}",
                details={"declared_bytes": int(declared), "max_bytes": config.max_bytes},
            )
        with open_writer(ctx.settings, backend=backend, path=path, bucket=config.bucket) as out:
            for chunk in response.iter_bytes(_CHUNK_BYTES):
                if out.size + len(chunk) > config.max_bytes:
                    raise StepError(
                        ErrorKind.TOO_LARGE,
                        f"file exceeds max_bytes={config.max_bytes} while downloading",
                        details={"max_bytes": config.max_bytes},
                    )
                out.write(chunk)
            storage_path = out.commit(media)
            return {
                "storage_path": storage_path,
                "content_type": media,
                "size": out.size,
                "sha256": out.sha256,
            }


TRANSFORMER = TransformerType(
    "http_download", HttpDownloadConfig, "execute-http-download", execute_http_download
)
