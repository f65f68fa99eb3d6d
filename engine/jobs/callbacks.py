"""Job callbacks, the pure part: which target a job gets, what is sent, how it is signed, and
when a failed delivery is tried again.

The body is compact UTF-8 JSON, signed exactly like execute-webhook-call's
(engine.security.signing: `X-Supaflow-Timestamp`, `X-Supaflow-Signature: v1=<hex>` over
`f"{timestamp}.{body}"`). `X-Supaflow-Delivery` is the same on every attempt of one callback
(`callback-<job_id>-<n>`, n counting the job's ends from 1), so a receiver can drop a duplicate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from engine.definitions.callback_target import CallbackTarget
from engine.security import signing

DELIVERY_HEADER = "X-Supaflow-Delivery"
EVENT_HEADER = "X-Supaflow-Event"
#: The longest wait between two attempts.
MAX_DELAY_SECONDS = 3600.0
#: How long one attempt may take (connect, send, answer).
REQUEST_TIMEOUT_SECONDS = 10.0

CallbackStatus = Literal["pending", "delivered", "failed"]


def resolve_target(
    definition_target: CallbackTarget | None, requested_url: str | None
) -> dict[str, Any] | None:
    """The target stored on a new job (jobs.on_finish), or None for no callback.

    A URL given at start replaces the definition's URL; the definition's signing secret
    variable, attempts and delay still apply (defaults without one). No secret is in it.
    """
    if requested_url is None:
        return None if definition_target is None else definition_target.model_dump()
    base = definition_target or CallbackTarget(url=requested_url)
    return base.model_copy(update={"url": requested_url}).model_dump()


@dataclass(frozen=True)
class Callback:
    """One owed callback (a job_callbacks row joined with its job), claimed for an attempt."""

    id: int
    job_id: str
    end_number: int
    workflow_id: str
    workflow_version: int | None
    url: str
    secret_env: str | None
    max_attempts: int
    retry_delay_seconds: float
    job_status: Literal["completed", "failed"]
    final_result: Any
    error_message: str | None
    error_kind: str | None
    finished_at: datetime
    attempt: int
    """This attempt's number (1 for the first)."""


def payload(callback: Callback) -> dict[str, Any]:
    """What a receiver gets: the job, how it ended, and its result or its error."""
    body: dict[str, Any] = {
        "job_id": callback.job_id,
        "workflow_id": callback.workflow_id,
        "workflow_version": callback.workflow_version,
        "status": callback.job_status,
        "finished_at": callback.finished_at.isoformat(),
    }
    if callback.job_status == "completed":
        body["final_result"] = callback.final_result
    else:
        body["error"] = callback.error_message
        body["error_kind"] = callback.error_kind
    return body


def encode(body: Any) -> bytes:
    """The exact bytes sent and signed (compact UTF-8 JSON, as execute-webhook-call)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def delivery_id(job_id: str, end_number: int) -> str:
    """The delivery id every attempt of one callback carries."""
    return f"callback-{job_id}-{end_number}"


def headers(callback: Callback, body: bytes, *, secret: bytes | None, now: int) -> dict[str, str]:
    """The request headers: JSON, delivery id, event, and the signature when there is a secret."""
    result = {
        "Content-Type": "application/json",
        DELIVERY_HEADER: delivery_id(callback.job_id, callback.end_number),
        EVENT_HEADER: f"job.{callback.job_status}",
    }
    if secret is not None:
        result.update(signing.sign(secret, now, body))
    return result


def retry_delay(attempts: int, first_delay: float) -> float:
    """Seconds to wait after `attempts` failed attempts: first_delay, doubling, capped."""
    if attempts < 1:
        return 0.0
    return float(min(first_delay * 2.0 ** min(attempts - 1, 30), MAX_DELAY_SECONDS))


@dataclass(frozen=True)
class Outcome:
    """What one attempt leads to: the row's new status and, when pending, the next delay."""

    status: CallbackStatus
    delay_seconds: float | None


def after_attempt(
    *, attempt: int, max_attempts: int, first_delay: float, succeeded: bool
) -> Outcome:
    """Delivered on success; failed after the last attempt; otherwise pending again after the
    backoff delay. Every failure is retried: a receiver that is down, misconfigured (4xx) or
    unreachable may be fixed before the attempts run out."""
    if succeeded:
        return Outcome("delivered", None)
    if attempt >= max_attempts:
        return Outcome("failed", None)
    return Outcome("pending", retry_delay(attempt, first_delay))


def status_error(code: int) -> str:
    """The error stored for an answer that is not a success (no body: it is the receiver's)."""
    return f"receiver answered HTTP {code}"
