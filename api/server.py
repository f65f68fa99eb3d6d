"""How uvicorn serves the API: the header limit and the JSON body of the server's own errors.

Some requests never reach the application: h11, uvicorn's HTTP parser, refuses a header value
holding a bare CR or a NUL, and a header block that grows past its buffer limit. Plain uvicorn
answers those with a text/plain 400 and closes at once; with the rest of a large request
still unread, the close resets the connection and the client often sees only the reset.
`JSONErrorH11Protocol` (pass `SERVER_OPTIONS` to uvicorn) changes three things:

- the answer is the uniform JSON error body: 400 `bad_request` for a malformed request, 431
  `request_header_fields_too_large` when the request line and headers pass
  `MAX_HEADER_BYTES`, both with `Connection: close`;
- the limit holds however the header arrives: h11 only measures a header block still
  incomplete after a read, so one that arrives whole is measured here too;
- the connection is closed gracefully: the answer is sent, the write side shut, and whatever
  the client still sends is read and dropped for up to `LINGER_SECONDS`, so the client reads
  the answer instead of a reset.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.errors import error_body, status_code_name

#: Largest request line plus headers the API reads (431 beyond it).
MAX_HEADER_BYTES = 64 * 1024
#: How long a refused connection keeps reading (and dropping) what the client still sends.
LINGER_SECONDS = 2.0

MESSAGES = {
    400: "the HTTP request is malformed (for example a header value with a CR or NUL)",
    431: f"the request line and headers exceed {MAX_HEADER_BYTES} bytes",
}


def header_block_size(event: h11.Request) -> int:
    """Bytes of a request's line and header lines as sent (names, values, separators)."""
    line = len(b"%s %s HTTP/1.1\r\n" % (event.method, event.target))
    return line + sum(len(name) + len(value) + 4 for name, value in event.headers.raw_items())


class _MeasuringConnection(h11.Connection):
    """An h11 server connection that applies MAX_HEADER_BYTES to complete header blocks too
    and remembers the status h11 suggests for the last protocol error."""

    error_status = 400

    def next_event(self) -> Any:
        """h11's next event; RemoteProtocolError (431) for a request whose headers are too
        large, even when they arrived in one read."""
        try:
            event = super().next_event()
            if isinstance(event, h11.Request) and header_block_size(event) > MAX_HEADER_BYTES:
                raise h11.RemoteProtocolError("header block too large", error_status_hint=431)
        except h11.RemoteProtocolError as exc:
            self.error_status = exc.error_status_hint
            raise
        return event


class JSONErrorH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering what the parser refuses in the API's error body."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Replaced before any data arrives: the same h11 server connection, measuring.
        self.measuring = _MeasuringConnection(h11.SERVER, MAX_HEADER_BYTES)
        self.conn = self.measuring
        self._refused = False

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does; once a request was refused, drop the rest unread."""
        if not self._refused:
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """Answer a protocol error with the JSON error body, then close gracefully."""
        hint = self.measuring.error_status
        status = hint if hint in MESSAGES else 400
        details = {"max_bytes": MAX_HEADER_BYTES} if status == 431 else None
        body = json.dumps(
            error_body(status_code_name(status), MESSAGES[status], details), separators=(",", ":")
        ).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        self._refused = True
        try:
            for event in (
                h11.Response(
                    status_code=status, headers=headers, reason=HTTPStatus(status).phrase.encode()
                ),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")
        except h11.LocalProtocolError:
            # A response was already under way: only closing can end it.
            self.transport.close()
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


#: Keyword arguments of `uvicorn.run` / `uvicorn.Config` for serving the API. uvicorn's own
#: X-Forwarded-For handling is off: TRUSTED_PROXIES decides whose header counts
#: (api/client_address.py); uvicorn would believe any local client's by default.
SERVER_OPTIONS: dict[str, Any] = {"http": JSONErrorH11Protocol, "proxy_headers": False}
