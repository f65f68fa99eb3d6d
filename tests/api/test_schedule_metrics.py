"""The schedules' metrics on GET /metrics, from real rows: schedules by state, firings by
outcome, and per schedule its next run, last firing, last outcome and failures in a row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from dbfixtures import create_user
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.schedule_metrics import SCHEDULE_METRIC_NAMES
from engine.db.schedule_firings import ScheduleFirings
from engine.db.store import JobStore
from engine.dispatch import RunStarter
from engine.settings import Settings

TOKEN = "metrics-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(
    make_settings: Callable[..., Settings], job_store: JobStore, closed_starter: RunStarter
) -> Iterator[TestClient]:
    """The real app with an operator token for /metrics."""
    with ExitStack() as stack:
        app = create_app(
            make_settings(metrics_token=TOKEN), store=job_store, starter=closed_starter
        )
        yield stack.enter_context(TestClient(app, raise_server_exceptions=False))


def scrape(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of one scrape."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    for name in SCHEDULE_METRIC_NAMES:
        assert f"# TYPE {name} " in response.text, name
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def test_schedule_metrics_follow_the_rows(
    client: TestClient, job_store: JobStore, db: psycopg.Connection[Any]
) -> None:
    """An hourly cron schedule (operator, named) and a paused one: the next run is the next
    full hour, the last firing and outcome are the row's, firings count by outcome."""
    user = create_user(db)
    fired = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    db.execute(
        "insert into public.schedules (user_id, name, workflow_id, kind, cron, input_data,"
        " last_fired_for, last_status, consecutive_failures) values"
        " (null, 'hourly_demo', 'demo_offline_v1', 'cron', '0 * * * *', %s, %s, 'failed', 2),"
        " (%s, null, 'demo_offline_v1', 'cron', '0 3 * * *', %s, null, null, 0)",
        [json.dumps({"text": "x"}), fired, user, json.dumps({"text": "y"})],
    )
    db.execute("update public.schedules set active = false where user_id = %s", [user])
    firings = ScheduleFirings(job_store)
    for outcome in ("missed", "missed", "inactive"):
        firings.count(outcome)

    parsed = scrape(client)
    states = {lab["state"]: v for lab, v in parsed["supaflow_schedules"]}
    # The app's definitions (synced by the fixture) ship one paused example schedule too.
    paused = db.execute("select count(*) from public.schedules where not active").fetchone()
    assert paused is not None and paused[0] >= 1
    assert states == {"active": 1.0, "paused": float(paused[0])}
    outcomes = {lab["outcome"]: v for lab, v in parsed["supaflow_schedule_firings_total"]}
    assert outcomes == {
        "created": 0.0,
        "duplicate": 0.0,
        "missed": 2.0,
        "inactive": 1.0,
        "backfilled": 0.0,
    }

    [(labels, next_run)] = parsed["supaflow_schedule_next_run_timestamp_seconds"]
    assert labels == {"schedule": "hourly_demo", "workflow_id": "demo_offline_v1"}
    now = datetime.now(UTC)
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert next_run in (next_hour.timestamp(), (next_hour + timedelta(hours=1)).timestamp())
    by_schedule = {
        name: {lab["schedule"]: v for lab, v in parsed[name]}
        for name in (
            "supaflow_schedule_last_fired_timestamp_seconds",
            "supaflow_schedule_last_success",
            "supaflow_schedule_consecutive_failures",
        )
    }
    assert by_schedule["supaflow_schedule_last_fired_timestamp_seconds"] == {
        "hourly_demo": fired.timestamp()
    }
    assert by_schedule["supaflow_schedule_last_success"] == {"hourly_demo": 0.0}
    assert by_schedule["supaflow_schedule_consecutive_failures"]["hourly_demo"] == 2.0
