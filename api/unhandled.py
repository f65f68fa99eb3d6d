"""A 500 that leaves the connection usable: the answer to an exception no handler took.

Starlette's outermost ServerErrorMiddleware answers such an exception with the app's 500
handler and then re-raises it, "so the server sees the failure". uvicorn, finding that a
response was already sent, can only close the connection, and does so without
`Connection: close`: a keep-alive client sends its next request on a dead connection and gets
a reset. `UnhandledErrorMiddleware` sits inside it and ends the exception there: the traceback
goes to the log, the caller gets the uniform JSON 500, and the connection stays open.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import INTERNAL_MESSAGE, error_response

logger = logging.getLogger(__name__)


class UnhandledErrorMiddleware:
    """Answer an unhandled exception with the JSON 500 instead of letting it reach the server.

    When the response was already started the exception is re-raised: a half-sent response
    can only be ended by closing the connection. When it was complete (a background task
    failed after the answer) the exception is only logged; the connection is fine.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; turn an exception that escapes it into a logged JSON 500."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = complete = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, complete
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            where = f"{scope.get('method', '')} {scope.get('path', '')}"
            if started and not complete:
                raise
            if complete:
                logger.exception("error after the response to %s was sent", where)
                return
            logger.exception("unhandled error on %s", where)
            await error_response(500, "internal_error", INTERNAL_MESSAGE)(scope, receive, send)
