"""Where the input policy of api/decoding.py meets FastAPI: bodies and request parameters.

- Bodies: a router built with `route_class=StrictJSONRoute` hands its endpoints a request whose
  `json()` is `api.decoding.decode_json`, so FastAPI's own body parsing applies the policy.
  Every route that takes a body must be one (tests/api/test_input_policy.py checks the app).
- Parameters: `check_parameters` is an app-wide dependency (`FastAPI(dependencies=...)`) that
  checks every query, path and header name and value before any route dependency runs.

Both raise `InputPolicyError`, answered as 422 `invalid_request` naming each location, before
authentication, like the body-size limit: a malformed request costs no token check or query.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from api.decoding import UndecodableInputError, decode_json, parameter_problems
from api.errors import InputPolicyError

#: The nesting limit used when the app has no settings (tiny test apps).
DEFAULT_MAX_DEPTH = 64
#: Bodies larger than this are decoded in the thread pool instead of on the event loop.
OFF_LOOP_BYTES = 64 * 1024


def max_json_depth(request: Request) -> int:
    """API_MAX_JSON_DEPTH of the app serving `request`."""
    settings = getattr(request.app.state, "settings", None)
    return int(getattr(settings, "api_max_json_depth", DEFAULT_MAX_DEPTH))


class StrictJSONRequest(Request):
    """A request whose JSON body is decoded by the API's input policy."""

    async def json(self) -> Any:
        """The decoded body; `InputPolicyError` when it breaks the policy.

        FastAPI turns any other exception raised while parsing a body into a bare 400, but
        re-raises an HTTPException, which `InputPolicyError` is, so its 422 gets through.
        """
        if not hasattr(self, "_strict_json"):
            raw = await self.body()
            depth = max_json_depth(self)
            try:
                if len(raw) > OFF_LOOP_BYTES:
                    # A large body takes tens of milliseconds (more when it is walked): off
                    # the event loop, so other requests are not held up meanwhile.
                    self._strict_json = await run_in_threadpool(decode_json, raw, max_depth=depth)
                else:
                    self._strict_json = decode_json(raw, max_depth=depth)
            except UndecodableInputError as exc:
                raise InputPolicyError(exc.problems) from None
        return self._strict_json


class StrictJSONRoute(APIRoute):
    """An API route whose endpoint reads its body through `StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given the strict request in place of the plain one."""
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def check_parameters(request: Request) -> None:
    """App-wide dependency: every query, path and header name and value is storable text."""
    problems = [
        *parameter_problems("query", request.query_params.multi_items()),
        *parameter_problems("path", ((k, str(v)) for k, v in request.path_params.items())),
        *parameter_problems("header", request.headers.items()),
    ]
    if problems:
        raise InputPolicyError(problems)
