"""Where executors keep files: a local folder or Supabase Storage.

Files are named by storage paths: `local://<object path>` (under the local storage folder)
or `supabase://<bucket>/<object path>`. Writers stream into a temporary file and publish it
only on `commit`, so a failed or oversized download never leaves a partial object behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal
from urllib.parse import urlsplit

import httpx
from storage3 import SyncStorageClient

from engine.errors import ErrorKind, StepError
from engine.settings import Settings
from tasks.http_client import make_client
from tasks.http_messages import status_kind, transport_error

Backend = Literal["local", "supabase"]

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,199}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_STORAGE_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class StorageLocation:
    """A parsed storage path."""

    backend: Backend
    bucket: str | None
    path: str

    @property
    def uri(self) -> str:
        """The storage path string (`local://...` or `supabase://bucket/...`)."""
        if self.backend == "local":
            return f"local://{self.path}"
        return f"supabase://{self.bucket}/{self.path}"


def safe_object_path(path: str) -> str:
    """`path` if every segment is a plain name (no traversal, no hidden or empty segments).

    Raises StepError(CLIENT_ERROR) otherwise.
    """
    segments = path.split("/")
    if not path or len(path) > 1024 or not all(_SEGMENT_RE.match(s) for s in segments):
        raise StepError(
            ErrorKind.CLIENT_ERROR,
            f"unsafe storage path {path[:200]!r}: segments must be plain names "
            "(letters, digits, '.', '_', '-', space; no leading dot)",
        )
    return path


def safe_filename(name: str, default: str = "download") -> str:
    """A file name reduced to safe characters (for names taken from URLs)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:120]
    return cleaned or default


def parse_storage_path(storage_path: str) -> StorageLocation:
    """Parse `local://...` or `supabase://bucket/...`; raises StepError(CLIENT_ERROR)."""
    scheme, sep, rest = storage_path.partition("://")
    if not sep:
        raise StepError(ErrorKind.CLIENT_ERROR, f"not a storage path: {storage_path[:200]!r}")
    if scheme == "local":
        return StorageLocation("local", None, safe_object_path(rest))
    if scheme == "supabase":
        bucket, _, path = rest.partition("/")
        if not _BUCKET_RE.match(bucket):
            raise StepError(ErrorKind.CLIENT_ERROR, f"invalid bucket name {bucket[:100]!r}")
        return StorageLocation("supabase", bucket, safe_object_path(path))
    raise StepError(ErrorKind.CLIENT_ERROR, f"unknown storage backend {scheme[:20]!r}")


def local_file(settings: Settings, path: str) -> Path:
    """The file of object `path` in the local storage folder (never outside it)."""
    root = settings.storage_dir.resolve()
    target = (root / safe_object_path(path)).resolve()
    if not target.is_relative_to(root):
        raise StepError(ErrorKind.CLIENT_ERROR, "storage path escapes the storage folder")
    return target


# ---------------------------------------------------------------------------------------------
# Supabase Storage
# ---------------------------------------------------------------------------------------------


def _supabase_storage(settings: Settings) -> SyncStorageClient:
    key = settings.supabase_service_role_key
    if key is None or not key.get_secret_value():
        raise StepError(
            ErrorKind.CONFIG, "SUPABASE_SERVICE_ROLE_KEY is not set (needed for Supabase Storage)"
        )
    secret = key.get_secret_value()
    base = settings.supabase_url.rstrip("/")
    # SUPABASE_URL is operator configuration, so its host is trusted for this client only.
    client = make_client(
        settings, timeout=_STORAGE_TIMEOUT_SECONDS, allow_hosts=[urlsplit(base).hostname or ""]
    )
    return SyncStorageClient(
        f"{base}/storage/v1/",
        {"apikey": secret, "Authorization": f"Bearer {secret}"},
        http_client=client,
    )


def _storage_failure(exc: Exception, what: str) -> StepError:
    if isinstance(exc, StepError):
        return exc
    if isinstance(exc, httpx.HTTPError):
        return transport_error(exc, f"Supabase Storage {what}")
    status = getattr(exc, "status", None)
    try:
        code = int(status) if status is not None else 0
    except (TypeError, ValueError):
        code = 0
    kind = status_kind(code) if code else ErrorKind.CONNECTION
    message = getattr(exc, "message", None) or str(exc)
    return StepError(kind, f"Supabase Storage {what} failed: {str(message)[:300]}")


def _supabase_upload(
    settings: Settings, bucket: str, path: str, source: Path, content_type: str
) -> None:
    storage = _supabase_storage(settings)
    try:
        storage.from_(bucket).upload(path, source, {"content-type": content_type, "upsert": "true"})
    except Exception as exc:
        raise _storage_failure(exc, "upload") from exc


def _supabase_download(settings: Settings, bucket: str, path: str) -> bytes:
    storage = _supabase_storage(settings)
    try:
        data = storage.from_(bucket).download(path)
    except Exception as exc:
        raise _storage_failure(exc, "download") from exc
    return bytes(data)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


class StorageWriter:
    """Streams bytes into a temporary file, hashing them; `commit` publishes the object."""

    def __init__(self, settings: Settings, location: StorageLocation) -> None:
        self.settings = settings
        self.location = location
        self.size = 0
        self._hash = hashlib.sha256()
        if location.backend == "local":
            # Same folder as the target, so publishing is an atomic rename.
            folder = local_file(settings, location.path).parent
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(tempfile.gettempdir())
        fd, name = tempfile.mkstemp(prefix=".part-", dir=folder)
        self._temp = Path(name)
        self._file: IO[bytes] | None = os.fdopen(fd, "wb")
        self.committed = False

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of what was written so far."""
        return self._hash.hexdigest()

    def write(self, chunk: bytes) -> None:
        """Append a chunk."""
        if self._file is None:
            raise RuntimeError("writer is closed")
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def commit(self, content_type: str) -> str:
        """Publish the object (replacing any previous one); return its storage path."""
        if self._file is None:
            raise RuntimeError("writer is closed")
        self._file.close()
        self._file = None
        try:
            if self.location.backend == "local":
                os.replace(self._temp, local_file(self.settings, self.location.path))
            else:
                assert self.location.bucket is not None
                _supabase_upload(
                    self.settings,
                    self.location.bucket,
                    self.location.path,
                    self._temp,
                    content_type,
                )
        finally:
            self._temp.unlink(missing_ok=True)
        self.committed = True
        return self.location.uri

    def abort(self) -> None:
        """Drop what was written."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._temp.unlink(missing_ok=True)


@contextmanager
def open_writer(
    settings: Settings, *, backend: Backend, path: str, bucket: str | None = None
) -> Iterator[StorageWriter]:
    """A writer for object `path`; anything not committed when the block ends is discarded."""
    if backend == "supabase" and not bucket:
        raise StepError(ErrorKind.CONFIG, "Supabase Storage needs a bucket")
    location = StorageLocation(
        backend, bucket if backend == "supabase" else None, safe_object_path(path)
    )
    writer = StorageWriter(settings, location)
    try:
        yield writer
    finally:
        if not writer.committed:
            writer.abort()


def put(
    settings: Settings,
    *,
    backend: Backend,
    path: str,
    data: bytes,
    content_type: str = "application/octet-stream",
    bucket: str | None = None,
) -> str:
    """Store `data` as one object; return its storage path."""
    with open_writer(settings, backend=backend, path=path, bucket=bucket) as writer:
        writer.write(data)
        return writer.commit(content_type)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def read_bytes(settings: Settings, storage_path: str) -> bytes:
    """The content of a stored object."""
    location = parse_storage_path(storage_path)
    if location.backend == "local":
        target = local_file(settings, location.path)
        try:
            return target.read_bytes()
        except FileNotFoundError as exc:
            raise StepError(ErrorKind.CLIENT_ERROR, f"{storage_path} does not exist") from exc
    assert location.bucket is not None
    return _supabase_download(settings, location.bucket, location.path)


@contextmanager
def local_copy(settings: Settings, storage_path: str) -> Iterator[Path]:
    """A local file holding the object: the file itself for local storage, else a
    temporary download removed when the block ends."""
    location = parse_storage_path(storage_path)
    if location.backend == "local":
        target = local_file(settings, location.path)
        if not target.is_file():
            raise StepError(ErrorKind.CLIENT_ERROR, f"{storage_path} does not exist")
        yield target
        return
    data = read_bytes(settings, storage_path)
    fd, name = tempfile.mkstemp(prefix=".dl-")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        yield temp
    finally:
        temp.unlink(missing_ok=True)
