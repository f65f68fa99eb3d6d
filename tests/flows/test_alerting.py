"""Alert evaluation, storage and delivery (flows.alerting) on a real database, delivering to a
local webhook receiver that verifies the signature."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from dbfixtures import as_user, create_user, insert_job, insert_job_event, insert_workflow
from psycopg.rows import dict_row
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from engine.db.connection import shared_store
from engine.db.store import JobStore
from engine.security.signing import verify
from engine.settings import Settings
from flows.alerting import DELIVERY_HEADER, EVENT_HEADER, run_alerting

SECRET = "alert-receiver-secret"


class AlertSettings(Settings):
    """Settings with the alerting fields the engine reads (ALERT_*), as they will be declared."""

    alert_failure_rate_threshold: float = 0.5
    alert_failure_rate_min_jobs: int = 3
    alert_failure_rate_window_seconds: float = 3600
    alert_stalled_running_seconds: float = 1800
    alert_stalled_retry_grace_seconds: float = 300
    alert_queue_age_seconds: float = 300
    alert_maintenance_seconds: float = 60
    alert_config_error_window_seconds: float = 3600
    alert_webhook_url: str | None = None
    alert_webhook_secret: SecretStr | None = None
    alert_webhook_timeout_seconds: float = 5
    alert_webhook_max_attempts: int = 3


@pytest.fixture
def store(engine_env: str) -> JobStore:
    """The engine's store on the test database."""
    return shared_store()


@pytest.fixture
def user(db: psycopg.Connection[Any]) -> str:
    """A user owning the test's jobs."""
    return create_user(db)


@pytest.fixture
def workflow(db: psycopg.Connection[Any]) -> str:
    """A workflow for the test's jobs."""
    return insert_workflow(db, "wf_alerts")


def settings(**overrides: Any) -> AlertSettings:
    """Settings from the test environment (engine_env) plus alerting overrides."""
    return AlertSettings(**overrides)


def alerts(db: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every alert row, oldest first."""
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute("select * from public.alerts order by id").fetchall()


def fail_jobs(db: psycopg.Connection[Any], user: str, wf: str, n: int, *, ago: float = 0) -> None:
    """`n` jobs of `wf` that failed `ago` seconds ago."""
    done = datetime.now(UTC) - timedelta(seconds=ago)
    for _ in range(n):
        insert_job(db, user, wf, status="failed", created_at=done, completed_at=done)


def test_high_failure_rate_opens_dedupes_and_resolves(
    store: JobStore, db: psycopg.Connection[Any], user: str, workflow: str
) -> None:
    """Failures open one alert, later passes refresh it instead of duplicating, and it resolves
    once the window no longer holds failures; a recurrence opens a new alert."""
    fail_jobs(db, user, workflow, 3)
    first = run_alerting(store, settings())
    assert [(k, s) for _, k, s in first.opened] == [("high_failure_rate", workflow)]
    (row,) = alerts(db)
    assert row["severity"] == "critical" and row["resolved_at"] is None
    assert row["detail"]["failed"] == 3 and row["detail"]["finished"] == 3

    second = run_alerting(store, settings())
    assert second.opened == [] and [k for _, k, _ in second.refreshed] == ["high_failure_rate"]
    (row2,) = alerts(db)
    assert row2["last_seen_at"] > row["last_seen_at"]

    db.execute("update public.jobs set completed_at = now() - interval '2 hours'")
    third = run_alerting(store, settings())
    assert [k for _, k, _ in third.resolved] == ["high_failure_rate"]
    assert alerts(db)[0]["resolved_at"] is not None

    fail_jobs(db, user, workflow, 3)
    run_alerting(store, settings())
    rows = alerts(db)
    assert [r["resolved_at"] is None for r in rows] == [False, True]


def test_one_open_alert_per_kind_and_subject_is_enforced_by_the_table(
    db: psycopg.Connection[Any],
) -> None:
    """The partial unique index refuses a second open alert for the same (kind, subject)."""
    insert = (
        "insert into public.alerts (kind, subject, severity, message, resolved_at) "
        "values ('slow_queue', 'pending', 'warning', 'm', %s)"
    )
    db.execute(insert, [datetime.now(UTC) + timedelta(seconds=1)])  # resolved: no conflict
    db.execute(insert, [None])
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert, [None])


def test_alerts_are_closed_to_api_roles(db: psycopg.Connection[Any], user: str) -> None:
    """Signed-in users and anon cannot read alerts (operator-only table)."""
    for role in ("authenticated", "anon"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(db, user, role):
            db.execute("select * from public.alerts")


def test_stalled_slow_queue_slow_maintenance_and_config_errors(
    store: JobStore, db: psycopg.Connection[Any], user: str, workflow: str
) -> None:
    """Each remaining rule opens its alert from real rows; a healthy pass resolves them."""
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    # Columns given at insert are kept (the touch trigger runs on UPDATE only).
    running = insert_job(
        db, user, workflow, status="running", created_at=long_ago,
        last_updated_at=long_ago, heartbeat_at=long_ago,
    )  # fmt: skip
    insert_job(db, user, workflow, status="awaiting_retry", next_retry_at=long_ago)
    insert_job(db, user, workflow, status="pending", created_at=long_ago)
    broken = insert_job(db, user, workflow, status="failed", completed_at=long_ago)
    insert_job_event(
        db,
        broken,
        "config_error",
        detail={"problems": [{"location": "steps[0]", "message": "unknown transformer 'x'"}]},
    )
    insert_job_event(db, broken, "step_failed", step_id="s", detail={"kind": "config"})

    outcome = run_alerting(store, settings(), maintenance_seconds=120.0)
    opened = {(k, s) for _, k, s in outcome.opened}
    assert opened == {
        ("stalled_running", workflow),
        ("stalled_awaiting_retry", workflow),
        ("slow_queue", "pending"),
        ("slow_maintenance", "maintenance"),
        ("config_error", workflow),
    }
    by_kind = {r["kind"]: r for r in alerts(db)}
    assert by_kind["stalled_running"]["detail"]["job_ids"] == [running]
    assert by_kind["config_error"]["detail"]["errors"] == 2
    assert "unknown transformer 'x'" in by_kind["config_error"]["message"]

    # Everything recovers; an unmeasured pass leaves slow_maintenance alone.
    db.execute("update public.jobs set status = 'completed', completed_at = now() - interval '3h'")
    db.execute("delete from public.jobs where id = %s", [broken])  # its events go with it
    outcome = run_alerting(store, settings())
    assert {k for _, k, _ in outcome.resolved} == {
        "stalled_running",
        "stalled_awaiting_retry",
        "slow_queue",
        "config_error",
    }
    run_alerting(store, settings(), maintenance_seconds=0.5)
    assert all(r["resolved_at"] is not None for r in alerts(db))


def _receiver(
    httpserver: HTTPServer, statuses: list[int]
) -> list[tuple[bool, Any, dict[str, str]]]:
    """A webhook receiver answering `statuses` in turn (then 200) that verifies signatures."""
    received: list[tuple[bool, Any, dict[str, str]]] = []
    answers = list(statuses)

    def handle(request: Request) -> Response:
        body = request.get_data()
        headers = dict(request.headers.items())
        received.append((verify(SECRET.encode(), headers, body), json.loads(body), headers))
        return Response("ok", status=answers.pop(0) if answers else 200)

    httpserver.expect_request("/alerts", method="POST").respond_with_handler(handle)
    return received


def test_delivery_is_signed_and_covers_opening_and_resolution(
    store: JobStore,
    db: psycopg.Connection[Any],
    user: str,
    workflow: str,
    httpserver: HTTPServer,
) -> None:
    """The opening and the resolution are each delivered once, signed like
    execute-webhook-call, and recorded on the alert."""
    received = _receiver(httpserver, [])
    config = settings(
        alert_webhook_url=httpserver.url_for("/alerts"), alert_webhook_secret=SecretStr(SECRET)
    )
    insert_job(
        db, user, workflow, status="pending", created_at=datetime.now(UTC) - timedelta(hours=1)
    )
    outcome = run_alerting(store, config)
    assert len(outcome.delivered) == 1
    valid, payload, headers = received[0]
    assert valid
    assert payload["event"] == "alert.opened"
    assert payload["alert"]["kind"] == "slow_queue" and payload["alert"]["subject"] == "pending"
    assert headers[EVENT_HEADER] == "alert.opened"
    assert headers[DELIVERY_HEADER] == f"alert-{payload['alert']['id']}-opened"
    assert alerts(db)[0]["delivered_at"] is not None

    run_alerting(store, config)  # still open: nothing new to deliver
    assert len(received) == 1

    db.execute("update public.jobs set status = 'completed', completed_at = now()")
    run_alerting(store, config)
    assert len(received) == 2
    valid, payload, _ = received[1]
    assert valid and payload["event"] == "alert.resolved"
    assert payload["alert"]["resolved_at"] is not None
    row = alerts(db)[0]
    assert row["resolution_delivered_at"] is not None and row["delivery_attempts"] == 0


def test_failed_delivery_is_retried_on_the_next_pass(
    store: JobStore,
    db: psycopg.Connection[Any],
    user: str,
    workflow: str,
    httpserver: HTTPServer,
) -> None:
    """A receiver error (or a redirect, which is not followed) leaves the delivery owed; the
    next pass delivers it, until max attempts is reached."""
    received = _receiver(httpserver, [500, 302])
    config = settings(
        alert_webhook_url=httpserver.url_for("/alerts"), alert_webhook_secret=SecretStr(SECRET)
    )
    fail_jobs(db, user, workflow, 3)
    first = run_alerting(store, config)
    assert first.delivered == [] and len(first.delivery_failures) == 1
    row = alerts(db)[0]
    assert row["delivered_at"] is None and row["delivery_attempts"] == 1
    assert "HTTP 500" in row["last_delivery_error"]

    assert len(run_alerting(store, config).delivery_failures) == 1  # 302 not followed
    assert len(run_alerting(store, config).delivered) == 1
    assert [valid for valid, _, _ in received] == [True, True, True]
    row = alerts(db)[0]
    assert row["delivered_at"] is not None and row["last_delivery_error"] is None


def test_delivery_gives_up_after_max_attempts(
    store: JobStore,
    db: psycopg.Connection[Any],
    user: str,
    workflow: str,
    httpserver: HTTPServer,
) -> None:
    """After ALERT_WEBHOOK_MAX_ATTEMPTS failures the alert stays listed but is not sent again."""
    received = _receiver(httpserver, [503, 503, 503, 503])
    config = settings(alert_webhook_url=httpserver.url_for("/alerts"), alert_webhook_max_attempts=2)
    fail_jobs(db, user, workflow, 3)
    for _ in range(4):
        run_alerting(store, config)
    assert len(received) == 2
    assert "X-Supaflow-Signature" not in received[0][2]  # no secret configured: unsigned
    assert alerts(db)[0]["delivery_attempts"] == 2


def test_no_webhook_configured_delivers_nothing(
    store: JobStore, db: psycopg.Connection[Any], user: str, workflow: str
) -> None:
    """Without ALERT_WEBHOOK_URL alerts are only stored (and listed at /operator/alerts)."""
    fail_jobs(db, user, workflow, 3)
    outcome = run_alerting(store, settings())
    assert outcome.delivered == [] and outcome.delivery_failures == []
    assert alerts(db)[0]["delivered_at"] is None
    assert outcome.as_dict()["opened"] == [f"high_failure_rate:{workflow}"]
