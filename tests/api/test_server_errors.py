"""What the server itself refuses gets the uniform JSON error body too: a header value with a
bare CR or a NUL (400), a request line plus headers over MAX_HEADER_BYTES (431) whether they
arrive in one read or many, each with `Connection: close` and read by the client in full
instead of a reset. Served by uvicorn with api.server.SERVER_OPTIONS, as `supaflow api` does."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import h11
import pytest
from fastapi import FastAPI, Request

from api.server import MAX_HEADER_BYTES, header_block_size


def make_app() -> FastAPI:
    """An app answering how many header bytes it was given."""
    app = FastAPI()

    @app.get("/headers")
    def headers(request: Request) -> dict[str, int]:
        """The total length of the request's header values."""
        return {"bytes": sum(len(value) for value in request.headers.values())}

    return app


@pytest.fixture
def server_port(serve_app: Callable[[FastAPI], str]) -> int:
    """The port of the app served by uvicorn with the API's server options."""
    return int(serve_app(make_app()).rsplit(":", 1)[1])


def exchange(port: int, request: bytes, chunk: int = 0) -> tuple[int, dict[str, str], Any]:
    """Send `request` raw (in pieces of `chunk` bytes when given) and read the answer to the
    end of the connection: (status, headers, decoded JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        step = chunk or len(request)
        for start in range(0, len(request), step):
            sock.sendall(request[start : start + step])
        received = b""
        while data := sock.recv(65536):
            received += data
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split(" ")[1]), headers, json.loads(body)


def get_with(header_value: bytes) -> bytes:
    """A GET /headers whose `X-Probe` header carries `header_value`; asks to close after."""
    return (
        b"GET /headers HTTP/1.1\r\nHost: api\r\nConnection: close\r\nX-Probe: "
        + header_value
        + b"\r\n\r\n"
    )


def assert_json_error(answer: tuple[int, dict[str, str], Any], status: int, code: str) -> Any:
    """The uniform error body with `code`, served as JSON with Connection: close."""
    got_status, headers, body = answer
    assert got_status == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


@pytest.mark.parametrize("value", [b"a\rb", b"a\x00b"], ids=["bare-cr", "nul"])
def test_malformed_header_values_get_the_json_400(server_port: int, value: bytes) -> None:
    """A header value h11 refuses is a JSON 400 `bad_request` (it was a text/plain 400)."""
    assert_json_error(exchange(server_port, get_with(value)), 400, "bad_request")


@pytest.mark.parametrize("chunk", [0, 1024], ids=["one-read", "streamed"])
@pytest.mark.parametrize("size", [MAX_HEADER_BYTES + 1, 125_000, 1_000_000])
def test_headers_over_the_limit_get_the_json_431(server_port: int, size: int, chunk: int) -> None:
    """Headers past MAX_HEADER_BYTES are a JSON 431 naming the limit, however they arrive;
    even a megabyte still being sent is answered readably, not with a reset."""
    answer = exchange(server_port, get_with(b"a" * size), chunk)
    error = assert_json_error(answer, 431, "request_header_fields_too_large")
    assert error["details"] == {"max_bytes": MAX_HEADER_BYTES}


def test_headers_under_the_limit_reach_the_app(server_port: int) -> None:
    """A request whose line and headers fit in MAX_HEADER_BYTES is served as usual."""
    value = b"a" * (MAX_HEADER_BYTES - 200)
    status, _, body = exchange(server_port, get_with(value), chunk=4096)
    assert status == 200
    assert body["bytes"] >= len(value)


def test_header_block_size_counts_what_was_sent() -> None:
    """The measure is the request line plus each `name: value` line with its CRLF."""
    event = h11.Request(method="GET", target="/x", headers=[("Host", "a"), ("X-Y", "bc")])
    sent = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Y: bc\r\n"
    assert header_block_size(event) == len(sent)
