"""Which PostgreSQL server the test session uses (tests/admin_server.py), without starting one."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import admin_server
import pytest
from admin_server import ADMIN_URL_ENV, Source, choose_source, ensure_admin_url, server_answers

GIVEN = "postgresql://ci@db.example:5433/postgres"


def _closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the port was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


@pytest.mark.parametrize(
    ("given_url", "local_answers", "expected"),
    [
        (GIVEN, True, Source.GIVEN),
        (GIVEN, False, Source.GIVEN),
        (None, True, Source.LOCAL),
        ("", True, Source.LOCAL),
        (None, False, Source.EMBEDDED),
        ("", False, Source.EMBEDDED),
    ],
)
def test_choice_prefers_given_url_then_local_server_then_embedded(
    given_url: str | None, local_answers: bool, expected: Source
) -> None:
    """A given URL always wins; without one the local server is used when it answers, and
    the embedded server only when nothing does. An empty URL counts as unset."""
    assert choose_source(given_url, local_answers=local_answers) is expected


def test_a_closed_port_does_not_answer() -> None:
    """Nothing listening at the address means no server answers (refused, not an error)."""
    assert server_answers(_closed_port_url()) is False


def test_given_url_is_used_without_probing_or_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """With TEST_ADMIN_DATABASE_URL set, neither the local server nor pgserver is touched."""

    def forbidden(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("must not be called")

    monkeypatch.setattr(admin_server, "server_answers", forbidden)
    monkeypatch.setattr(admin_server, "start_embedded", forbidden)
    environ = {ADMIN_URL_ENV: GIVEN}
    assert ensure_admin_url(environ) == (Source.GIVEN, GIVEN, None)
    assert environ == {ADMIN_URL_ENV: GIVEN}


def test_no_server_answering_starts_embedded_and_exports_its_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing at the local address: the embedded server is started in the data folder and
    its URL exported, so subprocesses inherit it."""
    started: list[Path] = []

    class FakeServer:
        def get_uri(self) -> str:
            return "postgresql://postgres:@/postgres?host=/tmp/sock"

    def fake_start(data_dir: Path) -> FakeServer:
        started.append(data_dir)
        return FakeServer()

    monkeypatch.setattr(admin_server, "start_embedded", fake_start)
    environ: dict[str, str] = {}
    source, url, handle = ensure_admin_url(environ, local_url=_closed_port_url(), data_dir=tmp_path)
    assert (source, url) == (Source.EMBEDDED, FakeServer().get_uri())
    assert isinstance(handle, FakeServer)
    assert started == [tmp_path]
    assert environ == {ADMIN_URL_ENV: url}
