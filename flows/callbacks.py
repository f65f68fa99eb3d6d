"""Delivering job callbacks (`on_finish`): one signed POST per due outbox row.

Called by run_workflow's hooks right after a job's terminal transition (that job's
callbacks only) and by every maintenance pass (every due retry). Each attempt is claimed
first (engine.db.callbacks: SKIP LOCKED and a lease, so concurrent passes never send one
callback twice), then POSTed through the SSRF-guarded client (the address is checked again at
connect time: DNS may have changed since the start), then recorded: delivered, pending again
after the backoff (engine.jobs.callbacks), or failed after max_attempts. Each attempt is
logged with its job, callback id, attempt and outcome.

What is stored for the user to read (last_error) never names an address the host resolved
to or a transport's own message: only the HTTP status, "timed out", "could not connect",
"host not found" or "address not allowed: <host as given>".
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prefect import Flow
from prefect.client.schemas.objects import FlowRun, State
from prefect.logging.loggers import flow_run_logger

from engine.db.callbacks import CallbackStore
from engine.db.connection import shared_store
from engine.db.store import JobStore
from engine.errors import StepError
from engine.jobs import callbacks as rules
from engine.jobs.callbacks import Callback
from engine.settings import Settings, get_settings
from tasks.http_client import HOST_NOT_FOUND, make_client
from tasks.http_messages import redact_url

logger = logging.getLogger("supaflow.callbacks")

LogTarget = logging.Logger | logging.LoggerAdapter[Any]


@dataclass
class CallbackPass:
    """What one delivery pass did: callback ids by outcome."""

    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        """Counts for the maintenance flow's return value."""
        return {
            "delivered": len(self.delivered),
            "retrying": len(self.retrying),
            "failed": len(self.failed),
        }


class _AttemptError(Exception):
    """An attempt failed; `public` is what the user may read, `code` the HTTP status."""

    def __init__(self, public: str, code: int | None = None) -> None:
        super().__init__(public)
        self.public = public
        self.code = code


def _secret(callback: Callback) -> bytes | None:
    if callback.secret_env is None:
        return None
    value = os.environ.get(callback.secret_env, "")
    if not value:
        raise _AttemptError(
            f"environment variable {callback.secret_env} is not set (needed for callback "
            "signatures)"
        )
    return value.encode("utf-8")


def _public_error(exc: Exception) -> str:
    """The stored, user-visible text of a failed attempt (no resolved addresses)."""
    if isinstance(exc, StepError):
        # The SSRF guard's refusal names the host as given ("address not allowed: <host>").
        return exc.message
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError) and str(exc) == HOST_NOT_FOUND:
        return HOST_NOT_FOUND
    if isinstance(exc, httpx.TransportError):
        return "could not connect"
    return "delivery failed"


def _post(client: httpx.Client, callback: Callback) -> int:
    """POST the callback once; its HTTP status, or _AttemptError."""
    body = rules.encode(rules.payload(callback))
    headers = rules.headers(callback, body, secret=_secret(callback), now=int(time.time()))
    try:
        # Streamed and closed unread: the receiver's answer body is not needed.
        with client.stream("POST", callback.url, content=body, headers=headers) as response:
            code = response.status_code
    except (httpx.HTTPError, httpx.InvalidURL, StepError) as exc:
        raise _AttemptError(_public_error(exc)) from exc
    if not 200 <= code < 300:
        raise _AttemptError(rules.status_error(code), code)
    return code


def attempt(
    store: CallbackStore, client: httpx.Client, callback: Callback, log: LogTarget
) -> rules.Outcome:
    """Make one claimed attempt and record it; the outcome (delivered, pending or failed)."""
    error: str | None = None
    code: int | None = None
    try:
        code = _post(client, callback)
    except _AttemptError as failed:
        error, code = failed.public, failed.code
    except Exception:  # a bug here must not stop the other callbacks of the pass
        log.exception("callback %d: unexpected error", callback.id)
        error = "delivery failed"
    outcome = rules.after_attempt(
        attempt=callback.attempt,
        max_attempts=callback.max_attempts,
        first_delay=callback.retry_delay_seconds,
        succeeded=error is None,
    )
    recorded = store.record(callback, outcome, error=error, response_code=code)
    extra = {
        "job_id": callback.job_id,
        "callback_id": callback.id,
        "attempt": callback.attempt,
        "decision": f"callback_{outcome.status}",
    }
    level = logging.INFO if outcome.status == "delivered" else logging.WARNING
    log.log(
        level,
        "callback %d to %s, attempt %d/%d: %s%s%s",
        callback.id,
        redact_url(callback.url),
        callback.attempt,
        callback.max_attempts,
        outcome.status,
        f" ({error})" if error else "",
        "" if recorded else " (not recorded: the row was claimed again)",
        extra=extra,
    )
    return outcome


def deliver_due(
    store: JobStore,
    settings: Settings,
    *,
    job_id: str | None = None,
    limit: int = 20,
    log: LogTarget | None = None,
) -> CallbackPass:
    """Attempt every due callback (only `job_id`'s, if given), up to `limit`."""
    active = log or logger
    outbox = CallbackStore(store.pool)
    result = CallbackPass()
    claimed = outbox.claim_due(job_id=job_id, limit=limit)
    if not claimed:
        return result
    with make_client(
        settings, timeout=rules.REQUEST_TIMEOUT_SECONDS, follow_redirects=False
    ) as client:
        for callback in claimed:
            outcome = attempt(outbox, client, callback, active)
            if outcome.status == "delivered":
                result.delivered.append(callback.id)
            elif outcome.status == "pending":
                result.retrying.append(callback.id)
            else:
                result.failed.append(callback.id)
    return result


def deliver_for_job(job_id: str, log: LogTarget | None = None) -> None:
    """Best effort, right after a job ended: attempt its due callbacks; never raises (what is
    not delivered now is retried by maintenance)."""
    active = log or logger
    try:
        settings = get_settings()
        deliver_due(shared_store(settings), settings, job_id=job_id, log=active)
    except Exception:
        active.exception(
            "callback delivery failed; maintenance retries it", extra={"job_id": job_id}
        )


def on_job_finished(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """run_workflow's hook on its final state (completed, failed, cancelled): deliver the
    job's callback now, if its end owes one. Logged to the flow run."""
    job_id = flow_run.parameters.get("job_id")
    if job_id:
        deliver_for_job(str(job_id), flow_run_logger(flow_run, flow))


def run_callbacks(
    store: JobStore, settings: Settings, *, limit: int, log: LogTarget
) -> dict[str, Any]:
    """The maintenance pass's step: attempt every due callback (first attempts the flow did
    not make, and retries whose backoff has passed); a summary, `{"error": True}` on failure."""
    try:
        return dict(deliver_due(store, settings, limit=limit, log=log).as_dict())
    except Exception:
        log.exception("callback delivery failed", extra={"decision": "callbacks"})
        return {"error": True}
