"""`AnswerHolder`: a TCP proxy in front of a server that passes every request on and holds
back every answer, until `drop()` closes the client connections unanswered (and refuses new
ones). A client of it
sees what a server killed after its work and before its answer looks like: no answer at all.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class AnswerHolder:
    """Listens on 127.0.0.1 (`url`), forwards each connection's bytes to `target_port`, reads
    and discards what comes back. `drop()` closes every client connection held so far."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed.is_set():  # accepted while `drop()` ran: drop it too
                    client.close()
                    return
                self._clients.append(client)
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
        except OSError:
            return
        threading.Thread(target=self._swallow, args=(upstream,), daemon=True).start()
        try:
            while chunk := client.recv(65536):
                upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            upstream.close()

    @staticmethod
    def _swallow(upstream: socket.socket) -> None:
        # The answer is read, so the server is not blocked writing it, and never passed on.
        try:
            while upstream.recv(65536):
                pass
        except OSError:
            pass

    def drop(self) -> int:
        """Stop listening and close every client connection, unanswered; how many."""
        with self._lock:
            self._closed.set()
            clients, self._clients = self._clients, []
        self._listener.close()
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        return len(clients)

    def __enter__(self) -> AnswerHolder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.drop()
