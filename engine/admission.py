"""Admission: the jobs table is the outbox, and this dispatcher empties it into Prefect.

POST /workflows/start only records the job (`pending`, no flow run) and answers; it never
waits on Prefect. The insert notifies `supaflow_jobs_pending` at commit (migration
20261203000100), which wakes a `PendingDispatcher`: it claims the oldest undispatched jobs in
batches, fair across users (engine/db/sql/jobs_pending_undispatched.sql), creates their flow
runs with a bounded number of calls in flight (so it goes at the rate Prefect answers, and a
slow Prefect slows only this loop), and records the run ids in the same transaction.

It runs as a thread wherever it is started: in the API process by default (API_ADMISSION), or
on its own (`supaflow dispatcher`). Several at once are safe: the claim is FOR UPDATE SKIP
LOCKED, and the flow run's idempotency key is the job id. When Prefect cannot be reached, the
loop backs off (doubling up to `max_backoff_seconds`) and the jobs stay pending; the
maintenance flow's dispatch pass remains the safety net for a dispatcher that is not running.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from engine.db.listen import PENDING_JOBS_CHANNEL, NotificationListener, reconnect_delay
from engine.db.store import JobStore, StartRun
from engine.settings import Settings

logger = logging.getLogger("supaflow.admission")


@dataclass(frozen=True)
class Pace:
    """How fast the dispatcher empties the outbox.

    `batch` jobs are claimed at once and `parallel` creations run side by side;
    `poll_seconds` bounds how long a missed notification can delay a job, and failures back
    off by doubling up to `max_backoff_seconds`.
    """

    batch: int = 50
    parallel: int = 8
    poll_seconds: float = 5.0
    max_backoff_seconds: float = 30.0


class PendingDispatcher:
    """A background loop creating the flow runs of pending jobs, woken by NOTIFY.

    `start_run(job_id)` returns the new flow run's id, or None when Prefect refused or could
    not be reached (engine.dispatch.RunStarter.try_start); a delayed job's time is passed
    as `scheduled_for`. `dsn` is where it LISTENs (the
    store's database by default).
    """

    def __init__(
        self,
        store: JobStore,
        start_run: StartRun,
        *,
        dsn: str | None = None,
        pace: Pace = Pace(),
    ) -> None:
        self.store = store
        self.start_run = start_run
        self.pace = pace
        #: Jobs handed to Prefect and jobs left pending (Prefect unreachable), since start.
        self.dispatched = 0
        self.deferred = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        if dsn is None:
            conninfo = store.pool.conninfo
            dsn = conninfo if isinstance(conninfo, str) else conninfo()
        self._listener = NotificationListener(
            dsn,
            lambda _payload: self._wake.set(),
            channel=PENDING_JOBS_CHANNEL,
            # Notifications sent while nobody listened are gone: look once after (re)connect.
            on_connect=self._wake.set,
        )
        #: Set while the LISTEN connection is open.
        self.listening = self._listener.connected
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls, store: JobStore, start_run: StartRun, settings: Settings
    ) -> PendingDispatcher:
        """A dispatcher on the store's database with the ADMISSION_* settings."""
        s = settings
        pace = Pace(s.admission_batch, s.admission_parallel, s.admission_poll_seconds)
        return cls(store, start_run, pace=pace)

    def start(self) -> None:
        """Listen and run the loop in daemon threads (returns at once)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._listener.start()
        self._thread = threading.Thread(target=self._run, name="admission", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop after the batch in hand (its runs are recorded) and stop listening."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._listener.stop()

    def drain(self) -> int:
        """Dispatch batches until no pending job is left or Prefect fails one; returns how
        many jobs failed to dispatch in the last batch (0: the outbox is empty)."""
        while not self._stop.is_set():
            pace = self.pace
            outcomes = self.store.dispatch_pending(
                self.start_run, grace_seconds=0, limit=pace.batch, parallel=pace.parallel
            )
            failed = sum(1 for _, run in outcomes if run is None)
            self.dispatched += len(outcomes) - failed
            self.deferred += failed
            if failed or len(outcomes) < pace.batch:
                return failed
        return 0

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if failures:
                # Prefect failing: new jobs' notifications must not cut the back-off short.
                self._stop.wait(reconnect_delay(failures, cap=self.pace.max_backoff_seconds))
            else:
                self._wake.wait(self.pace.poll_seconds)
            self._wake.clear()
            try:
                failures = failures + 1 if self.drain() else 0
            except Exception:
                failures += 1
                logger.exception("admission pass failed; retrying")
