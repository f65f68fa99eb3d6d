"""Alert evaluation, storage and delivery: one call per maintenance pass.

`run_alerting` observes the database (engine.db.alert_store), applies the pure rules
(engine.jobs.alerts), reconciles the alerts table (one open alert per (kind, subject)), logs each
decision, and delivers openings and resolutions to ALERT_WEBHOOK_URL when configured: a JSON
POST signed exactly like execute-webhook-call (engine.security.signing,
`X-Supaflow-Signature`), sent through the SSRF-guarded client. A failed delivery stays owed
and is retried on later passes, up to ALERT_WEBHOOK_MAX_ATTEMPTS.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from engine.db.alert_store import AlertStore, Delivery, Reconciled
from engine.db.store import JobStore
from engine.jobs.alerts import AlertThresholds, evaluate, evaluated_kinds
from engine.security import signing
from engine.settings import Settings
from tasks.http_client import make_client
from tasks.http_messages import redact_url

logger = logging.getLogger("supaflow.alerting")

DELIVERY_HEADER = "X-Supaflow-Delivery"
EVENT_HEADER = "X-Supaflow-Event"


@dataclass(frozen=True)
class AlertingOutcome:
    """What one alerting pass did (ids of alerts and delivery results)."""

    opened: list[tuple[int, str, str]] = field(default_factory=list)
    refreshed: list[tuple[int, str, str]] = field(default_factory=list)
    resolved: list[tuple[int, str, str]] = field(default_factory=list)
    delivered: list[tuple[int, str]] = field(default_factory=list)
    delivery_failures: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary for the maintenance flow's return value."""
        return {
            "opened": [f"{k}:{s}" for _, k, s in self.opened],
            "refreshed": [f"{k}:{s}" for _, k, s in self.refreshed],
            "resolved": [f"{k}:{s}" for _, k, s in self.resolved],
            "delivered": len(self.delivered),
            "delivery_failures": len(self.delivery_failures),
        }


def _setting(settings: object, name: str, default: Any) -> Any:
    # Settings gain these fields in engine/settings.py; until then the defaults apply.
    value = getattr(settings, name, default)
    return default if value is None else value


def _secret(settings: object) -> bytes | None:
    secret = getattr(settings, "alert_webhook_secret", None)
    if secret is None:
        return None
    text = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return text.encode("utf-8") if text else None


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def alert_payload(delivery: Delivery) -> dict[str, Any]:
    """The JSON body of a delivery: `{"event": "alert.opened"|"alert.resolved", "alert": …}`."""
    alert = {k: _iso(v) for k, v in delivery.alert.items()}
    return {"event": f"alert.{delivery.event}", "alert": alert}


def encode_payload(payload: Any) -> bytes:
    """The exact bytes sent and signed (compact UTF-8 JSON, as execute-webhook-call)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


LogTarget = logging.Logger | logging.LoggerAdapter[Any]


def deliver_alerts(
    alerts: AlertStore, settings: Settings, *, log: LogTarget | None = None
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """POST every owed delivery to ALERT_WEBHOOK_URL; returns (id, event) delivered / failed."""
    active = log or logger
    url = _setting(settings, "alert_webhook_url", None)
    if not url:
        return [], []
    secret = _secret(settings)
    timeout = float(_setting(settings, "alert_webhook_timeout_seconds", 10.0))
    max_attempts = int(_setting(settings, "alert_webhook_max_attempts", 10))
    # The URL is the operator's own configuration, like SUPABASE_URL: its host is trusted.
    host = urlsplit(str(url)).hostname or ""
    delivered: list[tuple[int, str]] = []
    failed: list[tuple[int, str]] = []
    with (
        alerts.deliveries_due(max_attempts=max_attempts) as batch,
        make_client(
            settings, timeout=timeout, follow_redirects=False, allow_hosts=(host,)
        ) as client,
    ):
        for delivery in batch.deliveries:
            alert_id, event = delivery.alert_id, delivery.event
            body = encode_payload(alert_payload(delivery))
            headers = {
                "Content-Type": "application/json",
                DELIVERY_HEADER: f"alert-{alert_id}-{event}",
                EVENT_HEADER: f"alert.{event}",
            }
            if secret is not None:
                headers.update(signing.sign(secret, int(time.time()), body))
            log_ctx = {
                "alert_kind": delivery.kind,
                "alert_subject": delivery.subject,
                "decision": f"deliver_{event}",
            }
            try:
                response = client.post(str(url), content=body, headers=headers)
                if not response.is_success:
                    raise RuntimeError(f"webhook answered HTTP {response.status_code}")
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                batch.mark_failed(alert_id, error)
                failed.append((alert_id, event))
                active.warning(
                    "alert delivery to %s failed: %s", redact_url(str(url)), error, extra=log_ctx
                )
                continue
            batch.mark_delivered(alert_id, event)
            delivered.append((alert_id, event))
            active.info("alert %s delivered", event, extra=log_ctx)
    return delivered, failed


def _log_changes(changes: Reconciled, active: LogTarget) -> None:
    for verb, items in (("opened", changes.opened), ("resolved", changes.resolved)):
        for alert_id, kind, subject in items:
            active.log(
                logging.WARNING if verb == "opened" else logging.INFO,
                "alert %s: %s %s (#%d)",
                verb,
                kind,
                subject,
                alert_id,
                extra={"alert_kind": kind, "alert_subject": subject, "decision": f"alert_{verb}"},
            )


def run_alerting(
    store: JobStore,
    settings: Settings,
    *,
    maintenance_seconds: float | None = None,
    log: LogTarget | None = None,
) -> AlertingOutcome:
    """Evaluate every alert rule, update the alerts table, and deliver what is owed.

    `maintenance_seconds` is how long the current maintenance pass has taken so far (the
    slow_maintenance rule); `log` is the caller's logger (the flow's run logger, so decisions
    show in the Prefect UI).
    """
    active = log or logger
    thresholds = AlertThresholds.from_settings(settings)
    alerts = AlertStore(store.pool)
    observations = alerts.observe(thresholds, maintenance_seconds=maintenance_seconds)
    candidates = evaluate(observations, thresholds)
    changes = alerts.reconcile(candidates, evaluated_kinds(observations))
    _log_changes(changes, active)
    delivered, failed = deliver_alerts(alerts, settings, log=active)
    return AlertingOutcome(
        opened=changes.opened,
        refreshed=changes.refreshed,
        resolved=changes.resolved,
        delivered=delivered,
        delivery_failures=failed,
    )
