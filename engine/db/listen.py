"""Waking a process the moment the database has work for it: PostgreSQL LISTEN/NOTIFY.

Two channels, each sent by a trigger when the writing transaction commits:
- `supaflow_jobs_pending` (migration 20261203000100): a job was recorded `pending` without a
  flow run; the admission dispatcher (engine/admission.py) hands it to Prefect.
- `supaflow_flow_runs` (migration 20261125000700): a job received its `prefect_flow_run_id`
  (the payload); the warm worker polls its work pool at once.

`NotificationListener` holds one autocommit connection that LISTENs on one channel in a
daemon thread and hands every payload to a callback.

A lost connection is reopened with a growing delay; `on_connect` runs after every (re)connect
because notifications sent while nobody listened are gone (PostgreSQL does not queue them for
absent listeners), so the owner should look for work it may have missed. The worker's regular
polling stays on as the fallback: this only makes it faster, never required.

Supabase: LISTEN needs a session connection (the direct connection or the session pooler on
port 5432); the transaction pooler (port 6543) does not deliver notifications.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

logger = logging.getLogger("supaflow.wake")

#: The channel the jobs trigger notifies; the payload is the flow run id.
FLOW_RUN_CHANNEL = "supaflow_flow_runs"
#: The channel a new pending job notifies (empty payload: the dispatcher claims in bulk).
PENDING_JOBS_CHANNEL = "supaflow_jobs_pending"


def reconnect_delay(failures: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before reconnect attempt number `failures` (1, 2, ...): doubling, capped."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** (failures - 1)))


class NotificationListener:
    """LISTEN on `channel` in a daemon thread; call `on_notify(payload)` for each notification.

    `on_notify` and `on_connect` run in the listener thread and must be quick and thread-safe
    (the warm worker's only set an event on its event loop). An exception they raise is
    logged and does not stop the listener.
    """

    def __init__(
        self,
        dsn: str,
        on_notify: Callable[[str], None],
        *,
        channel: str = FLOW_RUN_CHANNEL,
        on_connect: Callable[[], None] | None = None,
        wait_seconds: float = 0.5,
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self.on_notify = on_notify
        self.on_connect = on_connect
        # How long one wait for notifications lasts before the stop flag is checked again.
        self.wait_seconds = wait_seconds
        self.connected = threading.Event()
        self.received = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening in the background (returns at once)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"listen-{self.channel}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and close the connection (waits up to `timeout` seconds)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self.connected.clear()

    def _call(self, callback: Callable[..., None] | None, *args: str) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            logger.exception("notification callback failed")

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    # LISTEN takes an identifier, not a bind parameter.
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    failures = 0
                    self.connected.set()
                    logger.info("listening for new flow runs", extra={"channel": self.channel})
                    self._call(self.on_connect)
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=self.wait_seconds):
                            self.received += 1
                            self._call(self.on_notify, notify.payload)
            except psycopg.Error as exc:
                self.connected.clear()
                failures += 1
                delay = reconnect_delay(failures)
                logger.warning(
                    "LISTEN connection lost; polling covers the gap until it is back",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                self._stop.wait(delay)
        self.connected.clear()
