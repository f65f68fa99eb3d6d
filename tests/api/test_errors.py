"""The uniform error body for every 4xx/5xx, and the request body size limit (413)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.types import Message

from api.auth import AuthError
from api.bodylimit import BodySizeLimitMiddleware, declared_length
from api.errors import (
    INTERNAL_MESSAGE,
    install_error_handlers,
    status_code_name,
    validation_details,
)
from api.ratelimit import RateLimitedError
from engine.errors import (
    ConfigurationError,
    ConflictError,
    DefinitionError,
    InputValidationError,
    NotFoundError,
    Problem,
)

MAX_BODY = 64
LEAKY_SECRET = "password=hunter2"


class StartRequest(BaseModel):
    """The body of POST /workflows/start."""

    workflow_id: str
    input_data: dict[str, Any]


def _raise(workflow_id: str) -> None:
    """Raise the error a test workflow id names."""
    if workflow_id == "conflict":
        raise ConflictError("idempotency key already used")
    if workflow_id == "bad-input":
        raise InputValidationError(
            "input_data does not match the workflow's input_schema",
            details=[{"pointer": "/audio_url", "message": "'audio_url' is a required property"}],
        )
    if workflow_id == "bad-definition":
        raise DefinitionError("workflow is invalid", [Problem("steps[0].input", "bad JSONPath")])
    if workflow_id == "misconfigured":
        raise ConfigurationError(f"env var GEMINI_API_KEY missing ({LEAKY_SECRET})")
    if workflow_id == "crash":
        raise RuntimeError(f"driver exploded: {LEAKY_SECRET}")


def make_app() -> FastAPI:
    """An app whose routes raise each kind of error, behind the body limit."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY)

    @app.post("/workflows/start")
    def start(body: StartRequest) -> dict[str, Any]:
        _raise(body.workflow_id)
        return {"workflow_id": body.workflow_id}

    @app.get("/jobs/{job_id}")
    def get_job(job_id: uuid.UUID) -> dict[str, str]:
        raise NotFoundError(f"job {job_id} not found")

    @app.get("/limited")
    def limited() -> None:
        raise RateLimitedError("slow down", retry_after_seconds=17, limit=3)

    @app.get("/private")
    def private() -> None:
        raise AuthError("token has expired")

    @app.get("/teapot")
    def teapot() -> None:
        raise HTTPException(418, detail={"brew": "tea"})

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    """A client that sees 500 responses instead of re-raised server exceptions."""
    return TestClient(make_app(), raise_server_exceptions=False)


def _start(workflow_id: str) -> dict[str, Any]:
    return {"json": {"workflow_id": workflow_id, "input_data": {}}}


@pytest.mark.parametrize(
    "case",
    [
        ("GET", "/nowhere", {}, 404, "not_found", {}),
        (
            "DELETE",
            "/jobs/" + str(uuid.UUID(int=1)),
            {},
            405,
            "method_not_allowed",
            {"allow": "GET"},
        ),
        ("GET", "/jobs/" + str(uuid.UUID(int=1)), {}, 404, "not_found", {}),
        ("POST", "/workflows/start", _start("conflict"), 409, "conflict", {}),
        ("POST", "/workflows/start", _start("bad-input"), 422, "invalid_input", {}),
        ("POST", "/workflows/start", _start("bad-definition"), 422, "invalid_definition", {}),
        ("GET", "/limited", {}, 429, "rate_limited", {"retry-after": "17"}),
        (
            "GET",
            "/private",
            {},
            401,
            "unauthorized",
            {
                "www-authenticate": 'Bearer realm="supaflow", error="invalid_token", '
                'error_description="token has expired"'
            },
        ),
        ("GET", "/teapot", {}, 418, "i_m_a_teapot", {}),
        ("POST", "/workflows/start", _start("ok"), 200, None, {}),
    ],
)
def test_statuses_codes_and_headers(
    client: TestClient, case: tuple[str, str, dict[str, Any], int, str | None, dict[str, str]]
) -> None:
    """Each error maps to its status and code in the uniform body, with its extra headers."""
    method, path, kwargs, status, code, headers = case
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    for name, value in headers.items():
        assert response.headers[name] == value
    if code is None:
        return
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


def test_error_details_are_passed_through(client: TestClient) -> None:
    """Input-validation pointers, definition problems and rate-limit numbers reach the caller."""
    bad_input = client.post("/workflows/start", **_start("bad-input")).json()["error"]
    assert bad_input["details"] == [
        {"pointer": "/audio_url", "message": "'audio_url' is a required property"}
    ]
    bad_def = client.post("/workflows/start", **_start("bad-definition")).json()["error"]
    assert bad_def["details"] == [{"location": "steps[0].input", "message": "bad JSONPath"}]
    limited = client.get("/limited").json()["error"]
    assert limited["details"] == {"retry_after_seconds": 17, "limit": 3}
    teapot = client.get("/teapot").json()["error"]
    assert teapot["details"] == {"brew": "tea"}


@pytest.mark.parametrize(
    ("kwargs", "path", "locations"),
    [
        ({"json": {"workflow_id": "x"}}, "/workflows/start", {"body.input_data"}),
        ({"json": {}}, "/workflows/start", {"body.workflow_id", "body.input_data"}),
        (
            {"json": {"workflow_id": 5, "input_data": []}},
            "/workflows/start",
            {"body.workflow_id", "body.input_data"},
        ),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, None, None),
    ],
)
def test_request_validation_names_fields(
    client: TestClient, kwargs: dict[str, Any], path: str | None, locations: set[str] | None
) -> None:
    """Malformed requests are 422 with one detail per problem, located like "body.input_data";
    the values sent are not echoed back."""
    response = client.post(path or "/workflows/start", **kwargs)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert all(set(d) == {"location", "message", "type"} for d in error["details"])
    if locations is not None:
        assert {d["location"] for d in error["details"]} == locations
    else:
        assert error["details"][0]["location"].startswith("body")


def test_path_parameter_validation(client: TestClient) -> None:
    """A bad path parameter is located as "path.job_id"."""
    response = client.get("/jobs/not-a-uuid")
    assert response.status_code == 422
    assert [d["location"] for d in response.json()["error"]["details"]] == ["path.job_id"]


@pytest.mark.parametrize("workflow_id", ["crash", "misconfigured"])
def test_500_is_generic_and_logged(
    client: TestClient, workflow_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Unexpected failures, and engine errors with no public meaning, answer a generic 500;
    the details and traceback go to the log only."""
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        response = client.post("/workflows/start", **_start(workflow_id))
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": INTERNAL_MESSAGE, "details": None}
    }
    assert LEAKY_SECRET not in response.text
    records = [r for r in caplog.records if r.name == "api.errors"]
    assert records and records[-1].exc_info is not None
    assert "POST /workflows/start" in records[-1].getMessage()


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (404, "not_found"),
        (405, "method_not_allowed"),
        (413, "request_entity_too_large"),
        (599, "http_599"),
    ],
)
def test_status_code_name(status: int, name: str) -> None:
    """HTTP statuses get snake_case codes."""
    assert status_code_name(status) == name


def test_validation_details_drop_input() -> None:
    """Validation details keep location, message and type, never the input value."""
    errors = [{"loc": ("body", "input_data", 0), "msg": "bad", "type": "x", "input": "secret"}]
    assert validation_details(errors) == [
        {"location": "body.input_data.0", "message": "bad", "type": "x"}
    ]


# --- body size limit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"content-length", b"12")], 12),
        ([(b"content-type", b"text/plain")], None),
        ([(b"content-length", b"-1")], None),
        ([(b"content-length", b"abc")], None),
    ],
)
def test_declared_length(headers: list[tuple[bytes, bytes]], expected: int | None) -> None:
    """Only a plain non-negative Content-Length counts as declared."""
    assert declared_length({"type": "http", "headers": headers}) == expected


class _Response(Protocol):
    """What the in-process and the real HTTP clients' responses share."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def _assert_413(response: _Response) -> None:
    assert response.status_code == 413, response.text
    assert response.json() == {
        "error": {
            "code": "request_too_large",
            "message": f"request body exceeds {MAX_BODY} bytes",
            "details": {"max_bytes": MAX_BODY},
        }
    }


def _chunks(total: int, size: int = 16) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"content": b"x" * MAX_BODY}, 200),
        ({"content": b"x" * (MAX_BODY + 1)}, 413),
        ({"content": _chunks(MAX_BODY)}, 200),
        ({"content": _chunks(MAX_BODY * 4)}, 413),
    ],
    ids=["declared-at-limit", "declared-over", "chunked-at-limit", "chunked-over"],
)
def test_body_limit_in_process(client: TestClient, kwargs: dict[str, Any], status: int) -> None:
    """Bodies up to the limit pass; larger ones, declared or chunked, are 413 in the uniform
    shape."""
    response = client.post("/echo", **kwargs)
    if status == 413:
        _assert_413(response)
    else:
        assert response.json() == {"received": MAX_BODY}


def test_oversized_json_body_is_413_not_422(client: TestClient) -> None:
    """A too-large body on a validated route is refused by size, not parsed."""
    payload = {"workflow_id": "x", "input_data": {"blob": "y" * 200}}
    _assert_413(client.post("/workflows/start", json=payload))


@pytest.fixture(scope="module")
def live_server() -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1, so chunked bodies really stream."""
    config = uvicorn.Config(make_app(), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (lambda: b"x" * (MAX_BODY + 1), 413),
        (lambda: _chunks(MAX_BODY * 64), 413),
        (lambda: _chunks(MAX_BODY), 200),
    ],
    ids=["declared-over", "chunked-over", "chunked-at-limit"],
)
def test_body_limit_over_real_http(live_server: str, content: Any, status: int) -> None:
    """Over a real HTTP connection, a declared or a chunked body past the limit gets 413."""
    response = httpx.post(f"{live_server}/echo", content=content(), timeout=10)
    if status == 413:
        _assert_413(response)
    else:
        assert response.json() == {"received": MAX_BODY}


def test_middleware_counts_streamed_chunks_and_replaces_the_app_answer() -> None:
    """At ASGI level: body chunks are counted as they arrive; when they pass the limit the
    application's own reaction is dropped and exactly one 413 response is sent."""
    app_saw: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                if not message.get("more_body"):
                    break
        except Exception as exc:
            app_saw.append(type(exc).__name__)
            # What FastAPI does with a failed read: answer 400.
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"bad"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    incoming = [{"type": "http.request", "body": b"x" * 40, "more_body": True}] * 3
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(BodySizeLimitMiddleware(app, max_bytes=MAX_BODY)(scope, receive, send))

    assert app_saw == ["RequestTooLargeError"]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413
    assert len(incoming) == 1  # the third chunk was never read
