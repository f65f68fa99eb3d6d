"""The local stack's port checks (cli/services.py): a port another process holds is refused
up front with a message naming it, and `wait_http` never takes another server's answer on a
service's port for that service being ready."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from cli.services import (
    PortInUseError,
    Service,
    free_port,
    port_in_use,
    require_free_port,
    wait_http,
)


@contextmanager
def foreign_server() -> Iterator[int]:
    """Another HTTP server on 127.0.0.1 answering 404 to everything; yields its port."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def service(args: list[str], log_dir: Path) -> Iterator[Service]:
    """A `Service` running `args`, stopped afterwards."""
    started = Service("probe", args, {}, log_dir)
    try:
        yield started
    finally:
        started.stop()


def test_a_listening_port_is_refused_naming_port_and_service() -> None:
    """A port something listens on: PortInUseError (a RuntimeError) whose message names the
    port, what wanted it and the option that picks another."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            require_free_port(port, "REST API", option="--api-port")
    assert isinstance(info.value, RuntimeError)
    assert str(info.value) == (
        f"port {port} (REST API) is already in use; stop what listens there or pass --api-port"
    )
    assert (info.value.port, info.value.what) == (port, "REST API")


def test_a_port_bound_without_listening_is_refused() -> None:
    """A port held by a bound socket that does not listen cannot be listened on either."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} \\(Prefect server\\)"):
            require_free_port(port, "Prefect server")


def test_a_free_port_passes_even_with_connections_closing() -> None:
    """A free port passes; so does the port of a server that just stopped while its accepted
    connection closes (TIME_WAIT), as when the stack restarts Prefect on the same port."""
    require_free_port(free_port(), "REST API")
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: it is the side left in TIME_WAIT
    client.close()
    assert not port_in_use(port)
    require_free_port(port, "Prefect server", option="--prefect-port")


def test_wait_http_does_not_take_another_servers_answer(tmp_path: Path) -> None:
    """Another server answers 404 on the port while the service runs but does not listen
    there: no answer counts, and the error says another process answers on that port."""
    with (
        foreign_server() as port,
        service([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path) as idle,
        pytest.raises(RuntimeError, match=f"another process answers on port {port}"),
    ):
        wait_http(f"http://127.0.0.1:{port}/health", timeout=1.5, service=idle)


def test_wait_http_fails_fast_when_the_service_exits(tmp_path: Path) -> None:
    """The service exits (as one does that cannot bind its port) while another server
    answers there: the wait fails at once, naming the service and its log."""
    with (
        foreign_server() as port,
        service([sys.executable, "-c", "import time; time.sleep(0.5)"], tmp_path) as brief,
        pytest.raises(RuntimeError, match="probe exited"),
    ):
        wait_http(f"http://127.0.0.1:{port}/health", timeout=20, service=brief)


def test_wait_http_accepts_the_service_that_listens(tmp_path: Path) -> None:
    """The service itself listening on the port (any answer below 500) is ready."""
    port = free_port()
    args = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with service(args, tmp_path) as web:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=30, service=web)
        assert web.listens_on(port) is True
