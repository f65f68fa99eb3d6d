"""A fake Gemini API on a pytest-httpserver, speaking the wire format google-genai uses.

    fake = FakeGemini(httpserver)                  # registers its handlers
    fake.queue_transcript([{"start_seconds": 0, "end_seconds": 1.5, "speaker": "A",
                            "text": "hi"}], language="en")
    config = {..., "base_url": fake.base_url}       # and GEMINI_API_KEY=fake.api_key
    ...
    fake.generate_calls[0].json                     # what the SDK sent

Endpoints (`{v}` is the api_version, default v1beta):
- `POST /{v}/models/{model}:generateContent` answers the next queued reply (else
  `default_reply`, else HTTP 500 "no reply queued").
- Files API: `POST /upload/{v}/files` starts a resumable session and answers
  `X-Goog-Upload-URL` on this server; the SDK then posts chunks there with
  `X-Goog-Upload-Command: upload[, finalize]`; `GET /{v}/files/{id}` is PROCESSING for
  `polls_before_active` polls, then `file_final_state` (ACTIVE); `DELETE /{v}/files/{id}`.
Every request but the upload-session ones must carry `x-goog-api-key: <api_key>` (else
HTTP 400 as the real API does); every request is recorded in `calls`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass
class Reply:
    """One scripted answer to generateContent."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    delay_seconds: float = 0.0

    @classmethod
    def text(cls, text: str, *, finish_reason: str = "STOP") -> Reply:
        """A candidate whose only part is `text`."""
        return cls(
            body={
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": finish_reason,
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 10,
                    "candidatesTokenCount": 5,
                    "totalTokenCount": 15,
                },
                "modelVersion": "gemini-2.5-flash",
            }
        )

    @classmethod
    def json_value(cls, value: Any) -> Reply:
        """A candidate whose text is `value` as JSON."""
        return cls.text(json.dumps(value))

    @classmethod
    def transcript(cls, segments: list[dict[str, Any]], language: str | None = "en") -> Reply:
        """A transcript reply in the executor's schema."""
        return cls.json_value({"segments": segments, "language": language})

    @classmethod
    def finish(cls, reason: str, text: str = "") -> Reply:
        """A candidate stopped for `reason` (SAFETY, MAX_TOKENS, RECITATION, ...)."""
        reply = cls.text(text, finish_reason=reason)
        if reason == "SAFETY":
            reply.body["candidates"][0]["safetyRatings"] = [
                {
                    "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                    "probability": "HIGH",
                    "blocked": True,
                }
            ]
        if not text:
            reply.body["candidates"][0]["content"] = {"role": "model", "parts": []}
        return reply

    @classmethod
    def blocked_prompt(cls, reason: str = "SAFETY") -> Reply:
        """No candidates: the prompt itself was blocked."""
        return cls(body={"promptFeedback": {"blockReason": reason}})

    @classmethod
    def error(cls, status: int, message: str = "scripted error") -> Reply:
        """A Google API error body with HTTP `status`."""
        return cls(
            status=status,
            body={
                "error": {
                    "code": status,
                    "message": message,
                    "status": _STATUS_NAMES.get(status, "UNKNOWN"),
                }
            },
        )


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON (None if it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class FakeFile:
    """A file held by the fake Files API."""

    id: str
    mime_type: str
    display_name: str | None
    data: bytearray = field(default_factory=bytearray)
    polls: int = 0
    finalized: bool = False
    deleted: bool = False


class FakeGemini:
    """The fake server's state and scripting API (see the module docstring)."""

    def __init__(
        self,
        httpserver: HTTPServer,
        *,
        api_key: str = "fake-gemini-key",
        api_version: str = "v1beta",
        polls_before_active: int = 2,
        file_final_state: str = "ACTIVE",
    ) -> None:
        self.server = httpserver
        self.api_key = api_key
        self.api_version = api_version
        self.polls_before_active = polls_before_active
        self.file_final_state = file_final_state
        self.default_reply: Reply | None = None
        self.calls: list[Call] = []
        self.files: dict[str, FakeFile] = {}
        self._queue: list[Reply] = []
        self._sessions: dict[str, FakeFile] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        v = re.escape(api_version)
        routes: list[tuple[str, str, Any]] = [
            (rf"^/{v}/models/[^/]+:generateContent$", "POST", self._generate),
            (rf"^/upload/{v}/files$", "POST", self._start_upload),
            # The upload URL is the session's credential: no API key, as with the real API.
            (r"^/upload/sessions/[^/]+$", "POST", self._upload_chunk),
            (rf"^/{v}/files/[^/]+$", "GET", self._get_file),
            (rf"^/{v}/files/[^/]+$", "DELETE", self._delete_file),
        ]
        for pattern, method, handler in routes:
            httpserver.expect_request(re.compile(pattern), method=method).respond_with_handler(
                self._recorded(handler)
            )

    # -- scripting -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The URL to put in a transformer config's `base_url`."""
        return self.server.url_for("/").rstrip("/")

    def queue_reply(self, *replies: Reply) -> None:
        """Answer the next generateContent calls with `replies`, in order."""
        with self._lock:
            self._queue.extend(replies)

    def queue_transcript(self, segments: list[dict[str, Any]], language: str | None = "en") -> None:
        """Queue a transcript reply."""
        self.queue_reply(Reply.transcript(segments, language))

    def queue_text(self, text: str, *, finish_reason: str = "STOP") -> None:
        """Queue a plain-text reply."""
        self.queue_reply(Reply.text(text, finish_reason=finish_reason))

    def queue_error(self, status: int, message: str = "scripted error") -> None:
        """Queue an API error (429, 503, 400, ...)."""
        self.queue_reply(Reply.error(status, message))

    @property
    def pending_replies(self) -> int:
        """How many queued replies are still unused."""
        with self._lock:
            return len(self._queue)

    # -- inspection ------------------------------------------------------------------------

    def calls_to(self, fragment: str, method: str | None = None) -> list[Call]:
        """Recorded calls whose path contains `fragment` (and that used `method`)."""
        with self._lock:
            return [
                c
                for c in self.calls
                if fragment in c.path and (method is None or c.method == method)
            ]

    @property
    def generate_calls(self) -> list[Call]:
        """The generateContent calls received."""
        return self.calls_to(":generateContent")

    @property
    def uploads(self) -> list[FakeFile]:
        """Files whose upload was finalized."""
        with self._lock:
            return [f for f in self.files.values() if f.finalized]

    # -- handlers --------------------------------------------------------------------------

    def _recorded(self, handler: Any) -> Any:
        def wrapper(request: Request) -> Response:
            call = Call(
                method=request.method,
                path=request.path,
                query=request.query_string.decode(),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=request.get_data(),
            )
            with self._lock:
                self.calls.append(call)
            needs_key = not call.path.startswith("/upload/sessions/")
            if needs_key and call.headers.get("x-goog-api-key") != self.api_key:
                return self._error(400, "API key not valid. Please pass a valid API key.")
            response: Response = handler(request, call)
            return response

        return wrapper

    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(
            json.dumps(body), status=status, headers=headers or {}, content_type="application/json"
        )

    def _error(self, status: int, message: str) -> Response:
        return self._json(Reply.error(status, message).body, status)

    def _generate(self, request: Request, call: Call) -> Response:
        with self._lock:
            reply = self._queue.pop(0) if self._queue else self.default_reply
        if reply is None:
            return self._error(500, "FakeGemini: no reply queued")
        if reply.delay_seconds:
            time.sleep(reply.delay_seconds)
        return self._json(reply.body, reply.status)

    def _file_json(self, f: FakeFile, state: str) -> dict[str, Any]:
        return {
            "name": f"files/{f.id}",
            "displayName": f.display_name,
            "mimeType": f.mime_type,
            "sizeBytes": str(len(f.data)),
            "state": state,
            "uri": f"{self.base_url}/{self.api_version}/files/{f.id}",
        }

    def _start_upload(self, request: Request, call: Call) -> Response:
        if call.headers.get("x-goog-upload-command", "").strip() != "start":
            return self._error(400, "expected X-Goog-Upload-Command: start")
        meta = (call.json or {}).get("file", {})
        with self._lock:
            file_id = f"fake{next(self._ids)}"
            f = FakeFile(
                file_id,
                meta.get("mimeType") or meta.get("mime_type") or "",
                meta.get("displayName") or meta.get("display_name"),
            )
            self.files[file_id] = f
            self._sessions[file_id] = f
        return self._json(
            {},
            headers={
                "X-Goog-Upload-URL": f"{self.base_url}/upload/sessions/{file_id}",
                "X-Goog-Upload-Status": "active",
            },
        )

    def _upload_chunk(self, request: Request, call: Call) -> Response:
        session = call.path.rsplit("/", 1)[-1]
        command = call.headers.get("x-goog-upload-command", "")
        with self._lock:
            f = self._sessions.get(session)
            if f is None:
                return self._json(
                    Reply.error(404, "unknown upload session").body,
                    404,
                    headers={"X-Goog-Upload-Status": "final"},
                )
            f.data.extend(call.body)
            if "finalize" not in command:
                return self._json({}, headers={"X-Goog-Upload-Status": "active"})
            f.finalized = True
            del self._sessions[session]
            body = {"file": self._file_json(f, "PROCESSING")}
        return self._json(body, headers={"X-Goog-Upload-Status": "final"})

    def _get_file(self, request: Request, call: Call) -> Response:
        file_id = call.path.rsplit("/", 1)[-1]
        with self._lock:
            f = self.files.get(file_id)
            if f is None or f.deleted:
                return self._error(404, "file not found")
            f.polls += 1
            state = self.file_final_state if f.polls > self.polls_before_active else "PROCESSING"
            body = self._file_json(f, state)
            if state == "FAILED":
                body["error"] = {"code": 400, "message": "unsupported audio encoding"}
        return self._json(body)

    def _delete_file(self, request: Request, call: Call) -> Response:
        file_id = call.path.rsplit("/", 1)[-1]
        with self._lock:
            f = self.files.get(file_id)
            if f is None or f.deleted:
                return self._error(404, "file not found")
            f.deleted = True
        return self._json({})
