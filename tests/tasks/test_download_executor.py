"""execute-http-download against a local file server."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from engine.errors import ErrorKind, StepError
from tasks.context import StepContext
from tasks.http_download import (
    HttpDownloadConfig,
    content_type_allowed,
    execute_http_download,
    filename_from_url,
)
from tasks.storage import read_bytes

AUDIO = b"ID3" + bytes(range(256)) * 40


def _config(**values: Any) -> HttpDownloadConfig:
    return HttpDownloadConfig.model_validate(values)


def test_download_stores_file_and_reports_hash(httpserver: HTTPServer, ctx: StepContext) -> None:
    """The file lands in local storage; the output has path, type, size and sha256."""
    httpserver.expect_request("/media/talk.mp3").respond_with_data(
        AUDIO, content_type="audio/mpeg; charset=binary"
    )
    out = execute_http_download(
        _config(allowed_content_types=["audio/*"]),
        {"url": httpserver.url_for("/media/talk.mp3")},
        ctx,
    )
    assert out == {
        "storage_path": f"local://jobs/{ctx.job_id}/step/talk.mp3",
        "content_type": "audio/mpeg",
        "size": len(AUDIO),
        "sha256": hashlib.sha256(AUDIO).hexdigest(),
    }
    assert read_bytes(ctx.settings, out["storage_path"]) == AUDIO


def test_declared_size_over_limit_refused_before_reading(
    httpserver: HTTPServer, ctx: StepContext
) -> None:
    """A Content-Length above max_bytes fails with TOO_LARGE and stores nothing."""
    httpserver.expect_request("/big").respond_with_data(AUDIO, content_type="audio/mpeg")
    with pytest.raises(StepError) as info:
        execute_http_download(_config(max_bytes=100), {"url": httpserver.url_for("/big")}, ctx)
    assert info.value.kind is ErrorKind.TOO_LARGE
    assert "declares" in info.value.message
    assert not list(ctx.settings.storage_dir.rglob("*")) or not any(
        p.is_file() for p in ctx.settings.storage_dir.rglob("*")
    )


def test_streamed_size_over_limit_refused(httpserver: HTTPServer, ctx: StepContext) -> None:
    """Without Content-Length (chunked), the limit is enforced while streaming."""

    def chunked(_request: Request) -> Response:
        def body() -> Any:
            for _ in range(50):
                yield b"x" * 1000

        return Response(body(), content_type="audio/wav")  # no length: chunked

    httpserver.expect_request("/stream").respond_with_handler(chunked)
    with pytest.raises(StepError) as info:
        execute_http_download(
            _config(max_bytes=10_000), {"url": httpserver.url_for("/stream")}, ctx
        )
    assert info.value.kind is ErrorKind.TOO_LARGE
    assert "while downloading" in info.value.message
    assert not any(p.is_file() for p in ctx.settings.storage_dir.rglob("*"))


def test_content_type_refused(httpserver: HTTPServer, ctx: StepContext) -> None:
    """A media type outside allowed_content_types fails with UNSUPPORTED_CONTENT."""
    httpserver.expect_request("/page").respond_with_data("<html>", content_type="text/html")
    with pytest.raises(StepError) as info:
        execute_http_download(
            _config(allowed_content_types=["audio/*", "video/mp4"]),
            {"url": httpserver.url_for("/page")},
            ctx,
        )
    assert info.value.kind is ErrorKind.UNSUPPORTED_CONTENT
    assert "text/html" in info.value.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, ErrorKind.CLIENT_ERROR), (503, ErrorKind.SERVER_ERROR), (429, ErrorKind.RATE_LIMITED)],
)
def test_http_errors_are_classified(
    httpserver: HTTPServer, ctx: StepContext, status: int, kind: ErrorKind
) -> None:
    """Upstream error statuses become classified StepErrors."""
    httpserver.expect_request("/x").respond_with_data("nope", status=status)
    with pytest.raises(StepError) as info:
        execute_http_download(_config(), {"url": httpserver.url_for("/x")}, ctx)
    assert info.value.kind is kind


def test_path_template_and_forbidden_url(httpserver: HTTPServer, make_ctx: Any) -> None:
    """path_template placeholders are filled with safe values; a private URL is refused."""
    httpserver.expect_request("/a/b/weird name!.wav").respond_with_data(
        b"RIFF", content_type="audio/wav"
    )
    ctx = make_ctx(step_id="dl", attempt=3)
    out = execute_http_download(
        _config(path_template="in/{workflow_id}/{attempt}/{filename}"),
        {"url": httpserver.url_for("/a/b/weird%20name!.wav")},
        ctx,
    )
    assert out["storage_path"] == "local://in/wf/3/weird_name_.wav"
    with pytest.raises(StepError) as info:
        execute_http_download(_config(), {"url": "http://169.254.169.254/latest"}, ctx)
    assert info.value.kind is ErrorKind.FORBIDDEN_ADDRESS


@pytest.mark.parametrize(
    ("media", "patterns", "allowed"),
    [
        ("audio/mpeg", ["audio/*"], True),
        ("audio/mpeg", None, True),
        ("video/mp4", ["audio/*"], False),
        ("text/html", ["*/*"], True),
        ("audio/mpeg", ["audio/wav"], False),
    ],
)
def test_content_type_patterns(media: str, patterns: list[str] | None, allowed: bool) -> None:
    """Wildcard media-type patterns match type/* and */*."""
    assert content_type_allowed(media, patterns) is allowed


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://x/a/song.mp3", "song.mp3"),
        ("http://x/", "download"),
        ("http://x/..%2F..%2Fetc%2Fpasswd", "etc_passwd"),
        ("http://x/.hidden", "hidden"),
    ],
)
def test_filename_from_url(url: str, name: str) -> None:
    """File names from URLs are reduced to safe characters (no traversal, no dot files)."""
    assert filename_from_url(url) == name
