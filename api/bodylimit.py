"""ASGI middleware refusing request bodies larger than `API_MAX_BODY_BYTES` with 413.

A declared `Content-Length` over the limit is refused before any of the body is read. A body
without one (chunked) is counted as it streams in; once it passes the limit the read fails and
whatever the application would have answered is replaced by the 413, in the uniform error body.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import RequestTooLargeError, error_body


def declared_length(scope: Scope) -> int | None:
    """The request's `Content-Length`, or None when absent or not a plain number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class BodySizeLimitMiddleware:
    """Reject HTTP requests whose body exceeds `max_bytes` (add with `app.add_middleware`)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the application with a receive channel that stops at the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            await self._send_413(send)
            return

        received = 0
        exceeded = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise RequestTooLargeError(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            # Once the body overflowed, the application's own reaction (FastAPI turns a failed
            # body read into a 400) is dropped: the 413 below is the answer.
            if exceeded and not response_started:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not (exceeded and not response_started):
                raise
        if exceeded and not response_started:
            await self._send_413(send)

    async def _send_413(self, send: Send) -> None:
        exc = RequestTooLargeError(self.max_bytes)
        body = json.dumps(error_body(exc.code, exc.message, exc.details)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The unread rest of the body makes the connection unusable.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
