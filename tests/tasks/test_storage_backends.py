"""Storage backends: local folder (safe paths) and Supabase Storage (local fake server)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from engine.errors import ErrorKind, StepError
from engine.settings import Settings
from tasks.storage import local_copy, open_writer, parse_storage_path, put, read_bytes


@pytest.mark.parametrize(
    "path",
    ["../escape", "a/../../b", "/abs", "a//b", ".hidden/x", "a/./b", "a\\b", "", "a/b/"],
)
def test_unsafe_paths_refused(settings: Settings, path: str) -> None:
    """Traversal, absolute, empty and hidden segments are refused for every backend."""
    with pytest.raises(StepError) as info:
        put(settings, backend="local", path=path, data=b"x")
    assert info.value.kind is ErrorKind.CLIENT_ERROR
    with pytest.raises(StepError):
        read_bytes(settings, f"local://{path}")


@pytest.mark.parametrize(
    ("storage_path", "parsed"),
    [
        ("local://jobs/j/s/a.mp3", ("local", None, "jobs/j/s/a.mp3")),
        ("supabase://audio/jobs/a.mp3", ("supabase", "audio", "jobs/a.mp3")),
    ],
)
def test_parse_storage_path(storage_path: str, parsed: tuple[Any, ...]) -> None:
    """Storage paths name backend, bucket (Supabase) and object path."""
    location = parse_storage_path(storage_path)
    assert (location.backend, location.bucket, location.path) == parsed
    assert location.uri == storage_path


@pytest.mark.parametrize(
    "storage_path", ["s3://b/x", "jobs/x", "supabase://UP/x", "supabase://b/../x"]
)
def test_bad_storage_paths(storage_path: str) -> None:
    """Unknown schemes, missing schemes, bad buckets and traversal are refused."""
    with pytest.raises(StepError):
        parse_storage_path(storage_path)


def test_uncommitted_writer_leaves_nothing(settings: Settings) -> None:
    """A writer that fails before commit removes its temporary file."""
    with pytest.raises(RuntimeError), open_writer(settings, backend="local", path="a/b") as w:
        w.write(b"partial")
        raise RuntimeError("boom")
    assert not any(p.is_file() for p in settings.storage_dir.rglob("*"))


def test_local_round_trip(settings: Settings) -> None:
    """put then read_bytes/local_copy return the same content."""
    path = put(settings, backend="local", path="x/y.bin", data=b"abc")
    assert path == "local://x/y.bin"
    assert read_bytes(settings, path) == b"abc"
    with local_copy(settings, path) as file:
        assert file.read_bytes() == b"abc"
    with pytest.raises(StepError):
        read_bytes(settings, "local://x/missing.bin")


class FakeStorage:
    """Just enough of the Supabase Storage object API: upload (multipart) and download."""

    def __init__(self, server: HTTPServer, key: str) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.key = key
        server.expect_request(
            re.compile(r"^/storage/v1/object/.+"), method="POST"
        ).respond_with_handler(self.upload)
        server.expect_request(
            re.compile(r"^/storage/v1/object/.+"), method="GET"
        ).respond_with_handler(self.download)

    def _authorised(self, request: Request) -> bool:
        return (
            request.headers.get("apikey") == self.key
            and request.headers.get("Authorization") == f"Bearer {self.key}"
        )

    def upload(self, request: Request) -> Response:
        if not self._authorised(request):
            return Response(
                json.dumps(
                    {"statusCode": "403", "error": "Unauthorized", "message": "invalid signature"}
                ),
                status=403,
            )
        name = request.path.removeprefix("/storage/v1/object/")
        file = request.files["file"]
        self.objects[name] = (file.read(), file.mimetype)
        return Response(json.dumps({"Key": name, "Id": "1"}), content_type="application/json")

    def download(self, request: Request) -> Response:
        name = request.path.removeprefix("/storage/v1/object/")
        if name not in self.objects:
            return Response(
                json.dumps(
                    {"statusCode": "404", "error": "not_found", "message": "Object not found"}
                ),
                status=400,
            )
        data, mime = self.objects[name]
        return Response(data, content_type=mime)


def _supabase_settings(tmp_path: Path, server: HTTPServer, key: str | None) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        http_allowlist="",
        supabase_url=f"http://127.0.0.1:{server.port}",
        supabase_service_role_key=key,
    )


def test_supabase_round_trip(tmp_path: Path, httpserver: HTTPServer) -> None:
    """Objects are uploaded with the service key and content type, and read back; the
    operator's SUPABASE_URL host is trusted even when private."""
    fake = FakeStorage(httpserver, "service-key")
    settings = _supabase_settings(tmp_path, httpserver, "service-key")
    path = put(
        settings,
        backend="supabase",
        bucket="audio",
        path="jobs/j/a.mp3",
        data=b"ID3data",
        content_type="audio/mpeg",
    )
    assert path == "supabase://audio/jobs/j/a.mp3"
    assert fake.objects["audio/jobs/j/a.mp3"] == (b"ID3data", "audio/mpeg")
    assert read_bytes(settings, path) == b"ID3data"
    with local_copy(settings, path) as file:
        assert file.read_bytes() == b"ID3data"
    with pytest.raises(StepError) as info:
        read_bytes(settings, "supabase://audio/missing")
    assert info.value.kind is ErrorKind.CLIENT_ERROR


def test_supabase_errors(tmp_path: Path, httpserver: HTTPServer) -> None:
    """A wrong key is a CLIENT_ERROR; no key at all is CONFIG naming the variable."""
    FakeStorage(httpserver, "service-key")
    with pytest.raises(StepError) as info:
        put(
            _supabase_settings(tmp_path, httpserver, "wrong"),
            backend="supabase",
            bucket="audio",
            path="a",
            data=b"x",
        )
    assert info.value.kind is ErrorKind.CLIENT_ERROR
    with pytest.raises(StepError) as info:
        put(
            _supabase_settings(tmp_path, httpserver, None),
            backend="supabase",
            bucket="audio",
            path="a",
            data=b"x",
        )
    assert info.value.kind is ErrorKind.CONFIG
    assert "SUPABASE_SERVICE_ROLE_KEY" in info.value.message
